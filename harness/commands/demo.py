"""`chexbench demo`: the whole benchmark on embedded data and an embedded model, offline.

It writes the phantom CheXbench set (synthetic radiographs in the official data.json format,
with a known injected disparity: one race subgroup's images are made harder), evaluates the
project's demo CheXagent (trained by `chexagent demo-train`; the random smoke model when that
is absent or `--smoke` is given) on all 8 tasks, runs the paper's fairness analysis on the
phantom cardiomegaly items, and prints the tables. The numbers are about synthetic images and
are labelled so in every output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands import args as common
from harness.defaults import DEMO_DIR
from harness.phantom.attributes import DEMO_DISPARITY


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run CheXbench on the embedded phantom data and demo model",
        description=__doc__,
    )
    common.add_output(p, DEMO_DIR, "where data and results go (default %(default)s)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="use the random-weight smoke model instead of the trained demo model",
    )
    common.add_phantom_size_and_seed(p)
    p.add_argument(
        "--max-gen-toks",
        type=common.positive_int,
        default=None,
        help="cap on generated tokens (default: the model's official limit)",
    )
    common.add_batch_size(p)
    p.add_argument(
        "--disparity",
        default=DEMO_DISPARITY,
        help="subgroup whose phantom images are made harder, ATTR=GROUP:STRENGTH, or 'none'",
    )
    p.add_argument(
        "--n-fairness", type=common.positive_int, default=120, help="phantom cardiomegaly items"
    )
    p.add_argument("--no-fairness", action="store_true", help="skip the fairness analysis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from chexagent import DEMO_MODEL_DIR
    from harness.commands.fairness import print_outcome
    from harness.fairness.report import fairness_report
    from harness.phantom.writer import ensure_phantom
    from harness.runner import RunConfig, RunOptions, RunSpec, run_benchmark
    from harness.tables import print_results

    out = Path(args.output)
    steps = 3 if args.no_fairness else 4
    print(
        f"[1/{steps}] phantom CheXbench data (injected disparity: {args.disparity}) -> "
        f"{out / 'phantom'}"
    )
    phantom = ensure_phantom(
        out / "phantom", args.n_per_pair, args.phantom_seed, args.disparity, args.n_fairness
    )
    trained = DEMO_MODEL_DIR.is_dir() and not args.smoke
    pretrained = str(DEMO_MODEL_DIR) if trained else "smoke"
    label = (
        "the trained demo CheXagent (tiny, chexagent/assets/demo-model)"
        if trained
        else "the random-weight smoke model (accuracy at chance by design)"
    )
    print(f"[2/{steps}] evaluating {label} on all 8 tasks")
    config = RunConfig(
        model="chexagent",
        data=str(phantom / "data.json"),
        model_args={"pretrained": pretrained, "dtype": "float32", "device": "cpu"},
        max_gen_toks=args.max_gen_toks,
    )
    options = RunOptions(
        output=str(out / "runs"),
        batch_size=args.batch_size,
        display_name="CheXagent demo (tiny)" if trained else None,
        command=("chexbench", *sys.argv[1:]),
    )
    path = run_benchmark(RunSpec(config, options)).results
    print(f"[3/{steps}] results")
    print_results(json.loads(path.read_text()))
    print(f"results: {path}\nsamples: {path.parent / 'samples.jsonl'}")
    if not args.no_fairness:
        print(f"[4/{steps}] fairness (paper section 7) on the phantom cardiomegaly items")
        fairness = RunSpec(
            replace(
                config,
                data=str(phantom / "fairness.json"),
                tasks=("chexbench_binary_disease_classification_chexpert",),
            ),
            replace(options, output=str(out / "fairness-runs")),
        )
        run = run_benchmark(fairness).results
        print_outcome(fairness_report(run, phantom / "demographics.csv", out / "fairness"))
    print(
        "Browse it beside the paper's rows: chexbench leaderboard --results results "
        "(tick 'Show synthetic demo rows' in the sidebar)"
    )
    return 0
