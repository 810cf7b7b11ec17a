"""`chexbench adapters`: which model names `--model` accepts here, and where each comes from.

A plug-in that is installed but not listed (a typo in its entry-point group, the package in
another environment) is the usual reason a third-party model "does not exist"; this listing is
where to look. Nothing is imported to build it, so one broken plug-in cannot hide the others.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapters",
        help="list model adapters and presets, and where they come from",
        description="Lists built-in adapters, adapters declared by installed "
        "packages in the 'chexbench.adapters' entry-point group, and those "
        "defined in --adapter-file files.",
    )
    p.add_argument(
        "--adapter-file",
        action="append",
        default=[],
        help="also list the adapters this file defines (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.table import Table

    from harness.tables import wide_console
    from model_adapters.presets import PRESETS
    from model_adapters.registry import list_adapters, load_adapter_file

    for path in args.adapter_file:
        load_adapter_file(path)
    sources = list_adapters()
    if args.json:
        print(
            json.dumps(
                {
                    "adapters": [asdict(s) for s in sources],
                    "presets": [asdict(p) for p in PRESETS.values()],
                },
                indent=2,
            )
        )
        return 0
    table = Table(title="CheXbench model adapters")
    for column in ("name", "source", "target", "note"):
        table.add_column(column)
    for s in sources:
        origin = f"entry point ({s.distribution})" if s.kind == "entry point" else s.kind
        table.add_row(s.name, origin, s.target, s.note)
    presets = Table(title="Presets (--model NAME expands to the adapter and its arguments)")
    for column in ("preset", "adapter", "arguments", "needs", "license", "note"):
        presets.add_column(column)
    for p in PRESETS.values():
        needs = ", ".join([*p.needs, *(["--trust-remote-code"] if p.needs_remote_code else [])])
        note = f"NOT RUNNABLE YET: {p.unavailable}" if p.unavailable else p.note
        presets.add_row(
            p.name,
            p.adapter,
            ",".join(f"{k}={v}" for k, v in p.model_args.items()),
            needs,
            p.license,
            note,
        )
    console = wide_console()
    console.print(table)
    console.print(presets)
    return 0
