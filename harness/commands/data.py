"""`chexbench data validate`: is this data.json complete and are its images where we look?

Run before a long evaluation: a missing image found after hours of scoring wastes the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import args as common

if TYPE_CHECKING:
    from rich.table import Table

    from harness.data_validation import ValidationReport

MAX_LISTED_PROBLEMS = 30


def _table(report: ValidationReport, title: str) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for col in (
        "task",
        "dataset",
        "n",
        "Table 9 n",
        "options",
        "Table 9 options",
        "images",
        "missing",
        "unreadable",
    ):
        table.add_column(col, justify="left" if col in ("task", "dataset") else "right")
    for r in report.rows:
        options = " ".join(f"{k}:{v}" for k, v in sorted(r.option_counts.items())) or "-"
        table.add_row(
            r.task,
            r.dataset,
            str(r.n),
            "-" if r.paper_n is None else str(r.paper_n),
            options,
            r.paper_options or "-",
            str(r.images),
            f"[red]{r.missing}[/red]" if r.missing else "0",
            f"[red]{r.unreadable}[/red]" if r.unreadable else "0",
        )
    return table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="inspect CheXbench data files", description="Inspect CheXbench data files."
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    v = data_sub.add_parser(
        "validate",
        help="check a data.json and its images",
        description="Parse a CheXbench data.json with the loader `chexbench run` uses (which "
        "refuses what could be scored wrong without a word: empty files or tasks, "
        "keys given twice, one task under two aliases, option lists with gaps, "
        "empty or repeated options, invalid Unicode, deep nesting; docs/data.md), "
        "count items per task and dataset against Table 9, and decode every image "
        "in full. Exit 0 when everything is usable, 1 when images are missing, "
        "unreadable or over the size limit (each listed), 2 on malformed data "
        "(one line naming file, task and item).",
    )
    v.add_argument("--data", required=True, help="the data.json (official or phantom)")
    v.add_argument(
        "--image-root",
        default=None,
        help="folder the relative image paths start from (default: the folder "
        "that holds the data file)",
    )
    v.add_argument(
        "--image-map",
        default=None,
        help="YAML with 'prefixes' and/or 'sources' mapping to local folders",
    )
    common.add_max_image_pixels(v)
    v.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from harness.data import load_data
    from harness.data_validation import validate
    from harness.images import ImageResolver
    from harness.radiograph import set_pixel_limit

    set_pixel_limit(args.max_image_pixels)
    data = load_data(args.data)  # DataError -> "error: ..." and exit 2 (harness.cli)
    image_root = args.image_root or str(Path(args.data).resolve().parent)
    resolver = ImageResolver.from_args(image_root, args.image_map)
    report = validate(data, resolver, progress=True)
    from harness.tables import wide_console

    console = wide_console()
    console.print(_table(report, f"{args.data} (sha256 {data.sha256[:12]})"))
    console.print(f"image root: {image_root}")
    if data.ignored_keys:
        console.print(f"ignored task keys (not among the paper's 8 tasks): {data.ignored_keys}")
    if report.absent_subtasks:
        console.print(f"[yellow]note:[/yellow] no items for {', '.join(report.absent_subtasks)}")
    if report.ok:
        console.print("[green]OK[/green]: every item parsed and every image opened.")
        return 0
    console.print(f"[red]{len(report.problems)} image problem(s)[/red]:", highlight=False)
    for problem in report.problems[:MAX_LISTED_PROBLEMS]:
        console.print(f"  {problem}", highlight=False, soft_wrap=True)
    if len(report.problems) > MAX_LISTED_PROBLEMS:
        console.print(f"  ... and {len(report.problems) - MAX_LISTED_PROBLEMS} more")
    return 1
