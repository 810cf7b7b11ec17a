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

from harness.phantom.attributes import DEMO_DISPARITY

DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / "chexagent" / "assets" / "demo-model"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run CheXbench on the embedded phantom data and demo model",
                       description=__doc__)
    p.add_argument("--output", default="results/demo", help="where data and results go")
    p.add_argument("--smoke", action="store_true",
                   help="use the random-weight smoke model instead of the trained demo model")
    p.add_argument("--n-per-pair", type=int, default=20, help="phantom items per task/dataset")
    p.add_argument("--seed", type=int, default=0, help="phantom seed")
    p.add_argument("--max-gen-toks", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--disparity", default=DEMO_DISPARITY,
                   help="subgroup whose phantom images are made harder, ATTR=GROUP:STRENGTH, "
                   "or 'none'")
    p.add_argument("--n-fairness", type=int, default=120, help="phantom cardiomegaly items")
    p.add_argument("--no-fairness", action="store_true", help="skip the fairness analysis")
    p.set_defaults(func=run)


def ensure_phantom(out: Path, n_per_pair: int, seed: int, disparity: str, n_fairness: int):
    """Reuse an identical earlier phantom set; regenerate when the arguments differ."""
    from dataclasses import asdict

    from harness.phantom import Disparity, generate_phantom

    disp = None if disparity.lower() == "none" else Disparity.parse(disparity)
    manifest = out / "phantom.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if (old.get("n_per_pair"), old.get("seed"), old.get("disparity"),
                old.get("n_fairness")) == (n_per_pair, seed, asdict(disp) if disp else None,
                                           n_fairness):
            return out
    generate_phantom(out, n_per_pair=n_per_pair, seed=seed, disparity=disp,
                     n_fairness=n_fairness)
    return out


def run(args: argparse.Namespace) -> int:
    from harness.cli import main as cli_main
    from harness.runner import RunSpec, run_benchmark
    from harness.tables import print_results

    out = Path(args.output)
    steps = 3 if args.no_fairness else 4
    print(f"[1/{steps}] phantom CheXbench data (injected disparity: {args.disparity}) -> "
          f"{out / 'phantom'}")
    phantom = ensure_phantom(out / "phantom", args.n_per_pair, args.seed, args.disparity,
                             args.n_fairness)
    data = phantom / "data.json"
    trained = DEMO_MODEL_DIR.is_dir() and not args.smoke
    pretrained = str(DEMO_MODEL_DIR) if trained else "smoke"
    label = ("the trained demo CheXagent (tiny, chexagent/assets/demo-model)" if trained else
             "the random-weight smoke model (accuracy at chance by design)")
    print(f"[2/{steps}] evaluating {label} on all 8 tasks")
    spec = RunSpec(
        model="chexagent", model_args={"pretrained": pretrained, "dtype": "float32",
                                       "device": "cpu"},
        data=str(data), output=str(out / "runs"), batch_size=args.batch_size,
        max_gen_toks=args.max_gen_toks,
        display_name="CheXagent demo (tiny)" if trained else None,
        command=["chexbench", *sys.argv[1:]],
    )
    path = run_benchmark(spec)
    results = json.loads(path.read_text())
    print(f"[3/{steps}] results")
    print_results(results)
    print(f"results: {path}\nsamples: {path.parent / 'samples.jsonl'}")
    if not args.no_fairness:
        print(f"[4/{steps}] fairness (paper section 7) on the phantom cardiomegaly items")
        fair_spec = RunSpec(**{**spec.__dict__, "data": str(phantom / "fairness.json"),
                               "tasks": ["chexbench_binary_disease_classification_chexpert"],
                               "output": str(out / "fairness-runs")})
        fair_run = run_benchmark(fair_spec)
        code = cli_main(["fairness", str(fair_run), "--demographics",
                         str(phantom / "demographics.csv"), "--output", str(out / "fairness")])
        if code:
            return code
    print("Browse it beside the paper's rows: chexbench leaderboard --results results "
          "(tick 'Show synthetic demo rows' in the sidebar)")
    return 0
