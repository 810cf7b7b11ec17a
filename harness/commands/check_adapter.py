"""`chexbench check-adapter NAME`: the conformance report for a model adapter."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness.commands.run import model_args_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-adapter", help="check that a model adapter is wired correctly",
                       description="Runs determinism, batch invariance, naive-forward equality, "
                       "image sensitivity, token alignment and sign checks on phantom items; "
                       "exits 1 when any fails.")
    p.add_argument("name", help="adapter name (built-in, plug-in, or from --adapter-file)")
    p.add_argument("--model-args", default="")
    p.add_argument("--adapter-file", action="append", default=[])
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--items", type=int, default=8, help="phantom items to check on")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="allowed |log-prob| difference (raise it for bf16/fp16)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.conformance import phantom_items, run_checks
    from model_adapters.registry import get_adapter_class

    model_args = model_args_from(args)
    adapter = get_adapter_class(args.name)(**model_args)
    report = run_checks(adapter, phantom_items(args.items), args.tolerance)
    table = Table(title=f"Adapter conformance: {args.name}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("figure")
    table.add_column("detail")
    for c in report.checks:
        table.add_row(c.name, "[green]PASS[/]" if c.passed else "[red]FAIL[/]", c.figure,
                      c.detail)
    from harness.tables import wide_console

    console = wide_console()
    console.print(table)
    console.print("[green]all checks passed[/]" if report.passed else "[red]adapter FAILED[/]")
    return 0 if report.passed else 1
