"""`chexbench fairness RUN --demographics CSV`: subgroup F1 with the paper's balanced bootstrap.

Defaults reproduce section 7 / Figure 6 of the CheXagent paper (cardiomegaly, Yes/No, sex /
race / age, 2000 balanced bootstrap samples); the flags make it work for any binary task and
any demographic columns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import args as common
from harness.fairness.protocol import MIN_SUBJECTS, PAPER_B, PAPER_POSITIVE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fairness",
        help="subgroup F1 with the paper's balanced bootstrap (section 7, Fig. 6)",
        description="Fairness analysis of a binary task from a run's per-sample rows joined "
        "with a demographics CSV (id column + sex, race, age). Defaults are the "
        "paper's protocol: cardiomegaly Yes/No on CheXpert frontal images, sex / "
        "race (Asian, Black, White) / age (0-65, 65+), 2000 balanced bootstrap "
        "samples. See docs/statistics.md.",
    )
    p.add_argument("run", type=Path, help="results JSON of the run, or its .samples.jsonl")
    p.add_argument(
        "--demographics",
        type=Path,
        required=True,
        help="CSV: an id column (patient_id, study_id or image_path) and one column "
        "per attribute (sex, race, age)",
    )
    common.add_output(
        p,
        Path("results/fairness"),
        "folder for fairness.json, fairness.png, fairness.csv",
        type=Path,
    )
    p.add_argument(
        "--attribute",
        action="append",
        dest="attributes",
        default=None,
        help="demographic column to analyse (repeatable; default: sex, race, age)",
    )
    p.add_argument(
        "--groups",
        action="append",
        default=[],
        metavar="ATTR=G1,G2",
        help="subgroups to analyse for ATTR (default for the paper's attributes: "
        "sex=female,male race=Asian,Black,White age=0-65,65+; else all values)",
    )
    p.add_argument(
        "--bins",
        action="append",
        default=[],
        metavar="ATTR=E1,E2",
        help="bin a numeric column at these edges (default age=0,65)",
    )
    p.add_argument("--id-column", default=None, help="the CSV's id column (default: auto)")
    p.add_argument(
        "--question",
        default=None,
        help="regex selecting the rows' question (default: the paper's cardiomegaly question)",
    )
    p.add_argument("--task", default=None, help="only rows of this lm-eval task name")
    p.add_argument(
        "--positive",
        default=PAPER_POSITIVE,
        help="the option meaning 'disease present' (default: Yes)",
    )
    p.add_argument(
        "--all-views",
        action="store_true",
        help="keep lateral images too (the paper uses frontal views only)",
    )
    common.add_bootstrap(p, default=PAPER_B)
    common.add_seed(p)
    p.add_argument(
        "--per-stratum",
        type=common.per_stratum_rule,
        default="min",
        help="items drawn per (subgroup, label) per sample: min (default, never "
        "more than the smallest stratum has), median, max, or an integer",
    )
    p.add_argument(
        "--min-subjects",
        type=common.positive_int,
        default=MIN_SUBJECTS,
        help="warn when a subgroup has fewer unique subjects than this",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.fairness.protocol import PAPER_ATTRIBUTES
    from harness.fairness.report import FairnessSettings, fairness_report

    settings = FairnessSettings(
        attributes=tuple(args.attributes or PAPER_ATTRIBUTES),
        groups=tuple(args.groups),
        bins=tuple(args.bins),
        id_column=args.id_column,
        question=args.question,
        task=args.task,
        positive=args.positive,
        all_views=args.all_views,
        bootstrap_samples=args.bootstrap_samples,
        seed=args.seed,
        per_stratum=args.per_stratum,
        min_subjects=args.min_subjects,
    )
    print_outcome(fairness_report(args.run, args.demographics, args.output, settings))
    return 0


def print_outcome(outcome) -> None:
    """The Figure 6 table, warnings and where the files went."""
    from harness.fairness.report import rich_table
    from harness.tables import user_text, wide_console

    console = wide_console()
    console.print(rich_table(outcome.result, outcome.model_name))
    for w in outcome.result.warnings:  # they name groups from the CSV
        console.print(f"[yellow]warning:[/yellow] {user_text(w)}")
    if outcome.excluded:
        console.print(f"rows left out: {user_text(outcome.excluded)}")
    folder = outcome.path.parent
    paths = ", ".join(
        str(p) for p in (outcome.path, folder / "fairness.csv", folder / "fairness.png")
    )
    console.print(f"wrote {user_text(paths)}")
