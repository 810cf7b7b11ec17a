"""`chexbench fairness RUN --demographics CSV`: subgroup F1 with the paper's balanced bootstrap.

Defaults reproduce section 7 / Figure 6 of the CheXagent paper (cardiomegaly, Yes/No, sex /
race / age, 2000 balanced bootstrap samples); the flags make it work for any binary task and
any demographic columns.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.fairness.protocol import (
    MIN_SUBJECTS,
    PAPER_ATTRIBUTES,
    PAPER_B,
    PAPER_GROUPS,
    PAPER_POSITIVE,
    PAPER_QUESTION,
)
from harness.stats.bootstrap import DEFAULT_SEED

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from harness.fairness.analysis import FairnessResult


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fairness", help="subgroup F1 with the paper's balanced bootstrap (section 7, Fig. 6)",
        description="Fairness analysis of a binary task from a run's per-sample rows joined "
                    "with a demographics CSV (id column + sex, race, age). Defaults are the "
                    "paper's protocol: cardiomegaly Yes/No on CheXpert frontal images, sex / "
                    "race (Asian, Black, White) / age (0-65, 65+), 2000 balanced bootstrap "
                    "samples. See docs/statistics.md.")
    p.add_argument("run", type=Path, help="results JSON of the run, or its .samples.jsonl")
    p.add_argument("--demographics", type=Path, required=True,
                   help="CSV: an id column (patient_id, study_id or image_path) and one column "
                        "per attribute (sex, race, age)")
    p.add_argument("--output", "-o", type=Path, default=Path("results/fairness"),
                   help="folder for fairness.json, fairness.png, fairness.csv")
    p.add_argument("--attribute", action="append", dest="attributes", default=None,
                   help="demographic column to analyse (repeatable; default: sex, race, age)")
    p.add_argument("--groups", action="append", default=[], metavar="ATTR=G1,G2",
                   help="subgroups to analyse for ATTR (default for the paper's attributes: "
                        "sex=female,male race=Asian,Black,White age=0-65,65+; else all values)")
    p.add_argument("--bins", action="append", default=[], metavar="ATTR=E1,E2",
                   help="bin a numeric column at these edges (default age=0,65)")
    p.add_argument("--id-column", default=None, help="the CSV's id column (default: auto)")
    p.add_argument("--question", default=None,
                   help=f"regex selecting the rows' question (default: {PAPER_QUESTION!r})")
    p.add_argument("--task", default=None, help="only rows of this lm-eval task name")
    p.add_argument("--positive", default=PAPER_POSITIVE,
                   help="the option meaning 'disease present' (default: Yes)")
    p.add_argument("--all-views", action="store_true",
                   help="keep lateral images too (the paper uses frontal views only)")
    p.add_argument("--bootstrap-samples", "-B", type=int, default=PAPER_B, dest="B")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--per-stratum", default="min",
                   help="items drawn per (subgroup, label) per sample: min (default, never "
                        "more than the smallest stratum has), median, max, or an integer")
    p.add_argument("--min-subjects", type=int, default=MIN_SUBJECTS,
                   help="warn when a subgroup has fewer unique subjects than this")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so other chexbench commands do not pay for pandas/matplotlib/rich.
    from rich.console import Console

    from harness.fairness.analysis import analyse, to_block
    from harness.fairness.demographics import load_demographics
    from harness.fairness.items import question_matcher, select_items
    from harness.fairness.plot import plot_figure6
    from harness.io import atomic_write_json, atomic_write_text
    from harness.results_schema import ModelInfo, Results, validate_results
    from harness.stats.run_files import analysis_run_card, load_run, stable_id

    if args.B < 100:
        raise UserError(f"--bootstrap-samples {args.B} is too few (use >= 100; paper: 2000)")
    attributes = list(args.attributes or PAPER_ATTRIBUTES)
    bins = {k: [float(e) for e in v.split(",")]
            for k, v in _pairs(args.bins, "--bins", numeric=True).items()}
    # Custom bins make new group labels, so the paper's age groups no longer apply.
    groups = {a: list(PAPER_GROUPS[a]) for a in attributes if a in PAPER_GROUPS and a not in bins}
    groups.update({k: v.split(",") for k, v in _pairs(args.groups, "--groups").items()})
    paper = (args.question is None and args.task is None and args.positive == PAPER_POSITIVE
             and attributes == list(PAPER_ATTRIBUTES) and not args.groups and not args.bins
             and not args.all_views and args.B == PAPER_B)
    run_files = load_run(args.run)
    demographics = load_demographics(args.demographics, attributes, args.id_column, bins)
    items = select_items(run_files.rows, demographics, attributes, where=str(run_files.samples_path),
                         question=question_matcher(None, args.question), positive=args.positive,
                         frontal_only=not args.all_views, task=args.task)
    table = items.table
    result = analyse(table, attributes, groups, B=args.B, seed=args.seed,
                     per_stratum=args.per_stratum, min_subjects=args.min_subjects)
    if items.unparseable:
        result.warnings.append(f"{items.unparseable} prediction(s) missing or unparseable: "
                               "counted as wrong")
    task = args.task or (args.question or PAPER_QUESTION)
    block = to_block(result, task=task, protocol="paper-section-7" if paper else "custom",
                     positive=args.positive, n_items=len(table),
                     n_subjects=int(table["subject"].nunique()), excluded=dict(items.excluded),
                     unparseable=items.unparseable)
    settings = {"B": args.B, "seed": args.seed, "unit": "item (balanced strata)",
                "per_stratum": args.per_stratum}
    model = (ModelInfo(**run_files.results["model"]) if run_files.results
             else ModelInfo(name=run_files.name))
    results = Results(
        run_id=stable_id("fairness", {"run": str(args.run.resolve()),
                                      "demographics": str(args.demographics.resolve()),
                                      "attributes": attributes, "groups": groups,
                                      "question": args.question, **settings}),
        kind="fairness", source=run_files.source or "reproduced", model=model,
        run_card=analysis_run_card(args.seed, settings, [run_files.path, run_files.samples_path,
                                                         args.demographics]),
        fairness=block)
    obj = results.model_dump(mode="json")
    errors = validate_results(obj)
    if errors:
        raise RuntimeError(f"fairness results fail the schema: {errors[:3]}")
    out = args.output
    atomic_write_json(out / "fairness.json", obj)
    atomic_write_text(out / "fairness.csv", group_frame(result).to_csv(index=False))
    plot_figure6(result, out / "fairness.png",
                 f"{model.name}: {task} (F1, {args.B} balanced bootstrap samples)")
    console = Console(width=max(Console().width, 140))  # tables stay readable in logs
    console.print(rich_table(result, model.name))
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if items.excluded:
        console.print(f"rows left out: {dict(items.excluded)}")
    console.print(f"wrote {out / 'fairness.json'}, {out / 'fairness.csv'}, {out / 'fairness.png'}")
    return 0


def group_frame(result: FairnessResult) -> pd.DataFrame:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for name, attr in result.attributes.items():
        for g, s in attr.groups.items():
            rows.append({"attribute": name, "group": g, "f1_mean": s.f1_mean, "f1_std": s.f1_std,
                         "f1_ci_low": s.f1_ci[0], "f1_ci_high": s.f1_ci[1],
                         "f1_observed": s.f1_observed, "n_subjects": s.n_subjects,
                         "n_items": s.n_items, "n_positive": s.n_positive,
                         "n_negative": s.n_negative, "per_stratum": attr.per_stratum})
    return pd.DataFrame(rows)


def rich_table(result: FairnessResult, model: str) -> Table:
    from rich.table import Table

    table = Table(title=f"{model}: subgroup F1, balanced bootstrap (B={result.B}, "
                        f"seed {result.seed})")
    for col in ("attribute", "group", "F1 mean ± std", "95% CI", "subjects", "items (+/-)",
                "gap best-worst [95% CI]"):
        table.add_column(col, justify="left" if col in ("attribute", "group") else "right")
    for name, attr in result.attributes.items():
        gap = attr.gap
        gap_text = "" if gap is None else (f"{gap['value']:.3f} [{gap['ci'][0]:.3f}, "
                                           f"{gap['ci'][1]:.3f}]")
        for i, (g, s) in enumerate(attr.groups.items()):
            few = s.n_subjects < MIN_SUBJECTS
            table.add_row(name if i == 0 else "", g, f"{s.f1_mean:.3f} ± {s.f1_std:.3f}",
                          f"[{s.f1_ci[0]:.3f}, {s.f1_ci[1]:.3f}]",
                          f"[yellow]{s.n_subjects}[/yellow]" if few else str(s.n_subjects),
                          f"{s.n_items} ({s.n_positive}/{s.n_negative})",
                          gap_text if i == 0 else "")
        extra = {**({"unknown": attr.unknown} if attr.unknown else {}), **attr.not_analysed}
        if extra:
            table.add_row("", "[dim]not analysed[/dim]",
                          "[dim]" + ", ".join(f"{k}: {v}" for k, v in extra.items()) + "[/dim]",
                          "", "", "", "")
    return table


def _pairs(specs: list[str], flag: str, numeric: bool = False) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{flag} {spec!r}: expected ATTR=V1,V2")
        if numeric:
            try:
                [float(e) for e in value.split(",")]
            except ValueError as exc:
                raise UserError(f"{flag} {spec!r}: edges must be numbers") from exc
        out[key.strip()] = value.strip()
    return out
