"""`chexbench tasks`: the lm-eval tasks and groups, with Table 9 sizes and, given data, actual sizes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list CheXbench tasks and their sizes")
    p.add_argument("--data", help="a data.json: also count its items per task")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.docs import cached_data
    from harness.taxonomy import (
        PERCEPTION_GROUP,
        PERCEPTION_SUBTASKS,
        TASK_TYPES,
        TEXT_TASK_NAMES,
        group_name,
    )

    data = cached_data(args.data) if args.data else None
    table = Table(title="CheXbench tasks (lm-eval names)")
    for col in ("lm-eval task", "task", "dataset", "Table 9 n", "options"):
        table.add_column(col)
    if data:
        table.add_column("n in data")
    for s in PERCEPTION_SUBTASKS:
        row = [s.name, s.task.title, s.dataset.title, str(s.paper_n), s.paper_options or ""]
        if data:
            row.append(str(len(data.items_for(s))))
        table.add_row(*row)
    for slug, name in TEXT_TASK_NAMES.items():
        row = [name, slug.replace("_", " ").title(), "MIMIC-CXR", "—", "text"]
        if data:
            row.append(str(sum(1 for i in data.text if i.task == slug)))
        table.add_row(*row)
    from harness.tables import wide_console

    console = wide_console()
    console.print(table)
    groups = ", ".join(
        ["chexbench", PERCEPTION_GROUP]
        + [group_name(t) for t in TASK_TYPES if t.kind == "perception"]
    )
    console.print(f"Groups: {groups}")
    return 0
