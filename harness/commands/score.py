"""`chexbench score`: report metrics for a file of saved generations, without loading any
generation model, so a model's text can be rescored (new scorer, new metric) for free.

Predictions JSONL, one object per line:
    {"id": "findings_generation/12" | 12, "prediction": "...", "reference": "..." (optional)}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import args as common
from harness.defaults import TEXT_METRIC_FAMILIES
from harness.taxonomy import TEXT_TASK_NAMES

FAMILIES = TEXT_METRIC_FAMILIES


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score saved findings generations/summaries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--task",
        required=True,
        choices=sorted(TEXT_TASK_NAMES),
        help="which text task the predictions answer",
    )
    p.add_argument("--predictions", required=True, type=Path, help="JSONL of predictions")
    p.add_argument(
        "--references",
        type=Path,
        default=None,
        help="the CheXbench data.json (references, datasets and patients from it)",
    )
    common.add_output(
        p, default=None, type=Path, help="output folder (default: the predictions file's folder)"
    )
    p.add_argument(
        "--dataset", default="mimic_cxr", help="dataset of the rows when --references is not given"
    )
    common.add_display_name(p, "display name of the model (default: the file's stem)")
    p.add_argument(
        "--metrics", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}"
    )
    common.add_bertscore_preset(p)
    p.add_argument("--cache-dir", default=None, help="scorer cache (see `chexbench scorers`)")
    p.add_argument("--device", default="cpu", help="device for the model-based scorers")
    common.add_bootstrap(p)
    common.add_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.results_io import write_results
    from harness.saved_predictions import score_saved_predictions
    from harness.text_metrics import TextMetricsConfig
    from harness.text_metrics.config import ALL_FAMILIES

    families = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(families) - set(ALL_FAMILIES))
    if unknown:
        raise UserError(f"--metrics: unknown {unknown}; known: {list(ALL_FAMILIES)}")
    cfg = TextMetricsConfig.with_bertscore_preset(
        args.bertscore_preset, metrics=families, cache_dir=args.cache_dir, device=args.device
    )
    results, samples = score_saved_predictions(
        args.task,
        args.predictions,
        args.references,
        args.dataset,
        cfg,
        args.bootstrap_samples,
        args.seed,
        args.display_name,
        command=["chexbench", *sys.argv[1:]] if sys.argv[0].endswith("chexbench") else None,
    )
    out_dir = args.output or args.predictions.parent
    path = write_results(
        results, out_dir / f"{results.run_id}.json", {results.samples_file: samples}
    )
    for name, sub in results.subtasks.items():
        head = sub.metrics.get(sub.headline)
        shown = f"{head.value:.4f}" if head and head.value is not None else "unavailable"
        print(f"{name}: n={sub.n} excluded={sub.excluded} {sub.headline}={shown}")
        for mname, mv in sub.metrics.items():
            if mv.value is None:
                print(f"  {mname}: unavailable ({mv.unavailable})")
    print(f"wrote {path}")
    return 0
