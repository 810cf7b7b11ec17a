"""`chexbench run`: evaluate one model on CheXbench tasks.

Every option can also come from a YAML file (`--config run.yaml`, lm-eval's convention) whose
keys are the option names with underscores (`model`, `model_args`, `tasks`, `data`, `seed`,
`bootstrap_samples`, ...), each value checked as its option is on the command line; options
given on the command line win. The run card records the resolved configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.commands import args as common
from harness.defaults import RUNS_DIR
from harness.errors import UserError, did_you_mean, one_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="evaluate a model on CheXbench tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML file of run options (see above)")
    common.add_model(p, required=False)
    p.add_argument(
        "--tasks",
        default="chexbench",
        help="comma-separated tasks or groups (default: all 8 tasks)",
    )
    p.add_argument("--data", help="CheXbench data.json (official or phantom)")
    p.add_argument("--image-root", help="folder the data.json image paths are relative to")
    p.add_argument("--image-map", help="YAML map from path prefix / data_source to folders")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="exclude items whose images are missing (counted in the results)",
    )
    common.add_max_image_pixels(p)
    p.add_argument(
        "--truncate-prompts",
        action="store_true",
        help="cut an item's own text (question, indication, findings) from the left until it "
        "fits the model's context, instead of refusing the item; each cut is recorded and "
        "the leaderboard never compares such subtasks (default: refuse)",
    )
    common.add_output(p, RUNS_DIR, "results folder (default %(default)s)")
    common.add_batch_size(p)
    common.add_prefetch(p)
    p.add_argument(
        "--mc-mode",
        choices=["loglikelihood", "generate"],
        default=None,
        help="multiple choice by option log-likelihood (the paper) or by generating "
        "a letter (default: log-likelihood, or the preset's official mode)",
    )
    p.add_argument(
        "--max-gen-toks",
        type=common.positive_int,
        default=None,
        help="cap on generated tokens for the text tasks (default: each model's "
        "official limit, docs/protocol.md); a different value is recorded as a "
        "deviation in the run card",
    )
    common.add_seed(p)
    common.add_bootstrap(p)
    p.add_argument(
        "--limit", type=common.positive_int, help="score only the first N items per task (debug)"
    )
    p.add_argument(
        "--text-metrics",
        choices=["all", "rouge"],
        default="all",
        help="'rouge' skips the model-based report metrics",
    )
    p.add_argument(
        "--num-processes",
        type=common.positive_int,
        default=1,
        help="data-parallel processes (launches accelerate)",
    )
    common.add_display_name(p, "display name of the model in tables and the leaderboard")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="for a served model (--model openai): print the requests the run would "
        "send, how many are cached and the estimated tokens and cost; sends nothing",
    )


def resolve_config(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv` over the defaults a `--config` YAML sets: command-line options win."""
    first, _ = p.parse_known_args(argv)
    if first.config is None:
        return p.parse_args(argv)
    import yaml

    try:
        loaded = yaml.safe_load(first.config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"--config {first.config}: cannot read ({one_line(exc)})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"--config {first.config}: expected a mapping of option: value")
    actions: dict[str, argparse.Action] = {}
    for a in p._actions:  # the option itself, not a deprecated spelling sharing its dest
        if a.dest not in ("help", "config") and not isinstance(a, common.DeprecatedAlias):
            actions.setdefault(a.dest, a)
    _refuse_remote_code_grant(loaded, first)
    defaults: dict[str, Any] = {}
    for key, value in loaded.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            raise did_you_mean("option", str(key), sorted(actions), f" in --config {first.config}")
        if value is None:  # `limit:` with nothing after it: the option's default
            continue
        if dest == "model_args" and isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif dest == "tasks" and isinstance(value, list):
            value = ",".join(map(str, value))
        defaults[dest] = _checked(actions[dest], value, f"--config {first.config}: {key}")
    p.set_defaults(**defaults)
    return p.parse_args(argv)


def _refuse_remote_code_grant(loaded: dict[str, Any], first: argparse.Namespace) -> None:
    """Running a model's hub code is the user's decision on the command line: a config file
    (perhaps someone else's) cannot make it, at the top level or inside its model_args."""
    from model_adapters.loading import parse_model_args

    model_args = loaded.get("model_args") or loaded.get("model-args") or {}
    if not isinstance(model_args, dict):
        try:
            model_args = parse_model_args(str(model_args))
        except UserError:
            model_args = {}  # reported with its key below
    asked = loaded.get("trust_remote_code", loaded.get("trust-remote-code"))
    if (asked or model_args.get("trust_remote_code")) and not first.trust_remote_code:
        raise UserError(
            f"--config {first.config}: trust_remote_code would run the model's code from its "
            "repository, and a config file cannot grant that; pass --trust-remote-code on the "
            "command line"
        )


def _checked(action: argparse.Action, value: Any, where: str) -> Any:
    """A YAML value held to the rules the command line holds it to (the option's type and
    choices): `set_defaults` alone would take `limit: -3` or `mc_mode: banana` as given."""
    if action.nargs == 0:  # a flag (store_true)
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        return [_one(action, v, where) for v in (value if isinstance(value, list) else [value])]
    return _one(action, value, where)


def _one(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (list, dict)):
        raise UserError(f"{where}: expected a single value, got {value!r}")
    try:
        converted = action.type(str(value)) if action.type else str(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise UserError(f"{where}: {one_line(exc)}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UserError(f"{where}: {value!r} is not one of {choices}")
    return converted


def build_spec(args: argparse.Namespace) -> Any:
    """The run as the library takes it: presets expanded, arguments checked."""
    from harness.runner import RunConfig, RunOptions, RunSpec
    from model_adapters.presets import expand_model

    if not args.model:
        raise UserError("--model is required (an adapter or preset; see `chexbench adapters`)")
    if not args.data:
        raise UserError("--data is required (a CheXbench data.json)")
    adapter, model_args, preset = expand_model(
        args.model, common.model_args_from(args), args.trust_remote_code
    )
    mc_mode = args.mc_mode or (preset.mc_mode if preset and preset.mc_mode else "loglikelihood")
    config = RunConfig(
        model=adapter,
        data=args.data,
        model_args=model_args,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        image_root=args.image_root,
        image_map=args.image_map,
        skip_missing=args.skip_missing,
        mc_mode=mc_mode,
        max_gen_toks=args.max_gen_toks,
        limit=args.limit,
        seed=args.seed,
        bootstrap_samples=args.bootstrap_samples,
        text_metrics=args.text_metrics,
        max_image_pixels=args.max_image_pixels,
        truncate_prompts=args.truncate_prompts,
    )
    options = RunOptions(
        output=args.output,
        batch_size=args.batch_size,
        prefetch=args.prefetch,
        show_progress=not args.no_progress,
        display_name=args.display_name,
        command=("chexbench", *sys.argv[1:]),
    )
    return RunSpec(config, options)


def run(args: argparse.Namespace) -> int:
    from harness.data import file_sha256
    from harness.runner import expand_tasks, run_benchmark
    from harness.tables import print_results

    if args.config is not None:  # re-parse so the YAML fills only what the line left unset
        from harness.cli import OneLineParser

        standalone = OneLineParser(prog="chexbench run")
        add_arguments(standalone)
        args = resolve_config(standalone, args.argv[1:])
    spec = build_spec(args)
    expand_tasks(list(spec.config.tasks))  # a misspelt task fails before anything starts
    if getattr(args, "dry_run", False):
        from harness.runner import dry_run

        print_dry_run(dry_run(spec))
        return 0
    if args.num_processes > 1:
        from harness.multiprocess import launch_data_parallel
        from model_adapters.registry import REMOTE

        if spec.config.model in REMOTE:
            raise UserError(
                f"--model {spec.config.model} sends requests concurrently "
                "(concurrency=N in --model-args); --num-processes is for models "
                "loaded in this machine's processes"
            )

        code = launch_data_parallel(spec, args.num_processes)
        path = (
            Path(spec.options.output)
            / spec.config.run_id(file_sha256(Path(args.data)))
            / "results.json"
        )
    else:
        code, path = 0, run_benchmark(spec).results
    if code == 0 and path is not None and path.is_file():
        print_results(json.loads(path.read_text()))
        print(f"results: {path}\nsamples: {path.parent / 'samples.jsonl'}")
    return code


def print_dry_run(plan: dict[str, Any]) -> None:
    print(f"model: {plan['model']} at {plan['host']} (multiple choice: {plan['mc_mode']})")
    print(f"tasks: {', '.join(plan['tasks'])}")
    print(
        f"requests: {plan['requests']} ({plan['cached']} cached, {plan['to_send']} to send; "
        f"cache: {plan['cache']})"
    )
    print(
        f"estimated prompt tokens: {plan['prompt_tokens']} (text: {plan['token_method']}; "
        f"images: {plan['image_token_method']})"
    )
    print(
        f"answer tokens: about {plan['completion_tokens_expected']}, at most "
        f"{plan['completion_tokens_max']}"
    )
    if plan["prices_per_1m"] is None:
        print(
            f"estimated cost: unknown (no list price for {plan['model']!r}; add price_in=USD,"
            "price_out=USD per 1M tokens to --model-args)"
        )
    else:
        p_in, p_out = plan["prices_per_1m"]
        print(
            f"estimated cost: ${plan['cost_usd_expected']:.4f} (at most "
            f"${plan['cost_usd_max']:.4f}) at ${p_in:g}/${p_out:g} per 1M tokens in/out"
        )
