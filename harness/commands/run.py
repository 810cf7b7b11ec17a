"""`chexbench run`: evaluate one model on CheXbench tasks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import UserError


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Model selection flags shared by run, check-adapter and demo."""
    p.add_argument("--model", required=True, help="adapter name (see `chexbench adapters`)")
    p.add_argument("--model-args", default="",
                   help="k=v,... passed to the adapter, e.g. pretrained=DIR,dtype=bfloat16")
    p.add_argument("--adapter-file", action="append", default=[],
                   help="a Python file defining a VisionLanguageAdapter subclass (repeatable)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow models whose code lives on the hub (e.g. CheXagent-8b) to run it")


def model_args_from(args: argparse.Namespace) -> dict:
    from model_adapters.loading import parse_model_args
    from model_adapters.registry import load_adapter_file

    for path in args.adapter_file:
        load_adapter_file(path)
    try:
        model_args = parse_model_args(args.model_args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.trust_remote_code:
        model_args["trust_remote_code"] = True
    return model_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a model on CheXbench tasks",
                       description="Evaluate a model; re-running the same command resumes.")
    add_model_arguments(p)
    p.add_argument("--tasks", default="chexbench",
                   help="comma-separated tasks or groups (default: all 8 tasks)")
    p.add_argument("--data", required=True, help="CheXbench data.json (official or phantom)")
    p.add_argument("--image-root", help="folder the data.json image paths are relative to")
    p.add_argument("--image-map", help="YAML map from path prefix / data_source to folders")
    p.add_argument("--skip-missing", action="store_true",
                   help="exclude items whose images are missing (counted in the results)")
    p.add_argument("--output", default="results/runs", help="results folder")
    p.add_argument("--batch-size", type=int, default=8, help="items per forward batch")
    p.add_argument("--mc-mode", choices=["loglikelihood", "generate"], default="loglikelihood")
    p.add_argument("--max-gen-toks", type=int, default=None,
                   help="cap on generated tokens for the text tasks (default: each model's "
                   "official limit, docs/protocol.md); a different value is recorded as a "
                   "deviation in the run card")
    p.add_argument("--seed", type=int, default=1234, help="seed for the bootstrap CIs")
    p.add_argument("--bootstrap-b", type=int, default=1000, help="bootstrap resamples per CI")
    p.add_argument("--limit", type=int, help="score only the first N items per task (debug)")
    p.add_argument("--text-metrics", choices=["all", "rouge"], default="all",
                   help="'rouge' skips the model-based report metrics")
    p.add_argument("--num-processes", type=int, default=1,
                   help="data-parallel processes (launches accelerate)")
    p.add_argument("--name", help="display name of the model in tables and the leaderboard")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.runner import RunSpec, run_benchmark
    from harness.tables import print_results

    if args.num_processes > 1:
        from harness.multiprocess import launch_data_parallel

        return launch_data_parallel(args.num_processes, sys.argv[1:])
    spec = RunSpec(
        model=args.model, model_args=model_args_from(args), data=args.data,
        tasks=[t for t in args.tasks.split(",") if t.strip()], image_root=args.image_root,
        image_map=args.image_map, skip_missing=args.skip_missing, output=args.output,
        batch_size=args.batch_size, mc_mode=args.mc_mode, max_gen_toks=args.max_gen_toks,
        seed=args.seed, bootstrap_B=args.bootstrap_b, limit=args.limit,
        display_name=args.name, text_metrics=args.text_metrics,
        command=["chexbench", *sys.argv[1:]],
    )
    path = run_benchmark(spec)
    if path.name == "results.json" and path.is_file():
        print_results(json.loads(Path(path).read_text()))
        print(f"results: {path}\nsamples: {path.parent / 'samples.jsonl'}")
    return 0
