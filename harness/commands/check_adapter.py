"""`chexbench check-adapter NAME`: the conformance report for a model adapter."""

from __future__ import annotations

import argparse

from harness.commands import args as common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-adapter",
        help="check that a model adapter is wired correctly",
        description="Runs determinism, batch invariance, equality with the "
        "model's own processor and forward (where the model has a transformers "
        "class) and with the adapter's own uncached forward, image sensitivity, "
        "token alignment and sign checks on phantom items; exits 1 when any "
        "fails.",
    )
    p.add_argument("name", help="adapter or preset (built-in, plug-in, or from --adapter-file)")
    common.add_model_options(p)
    p.add_argument("--items", type=common.positive_int, default=8, help="phantom items to check on")
    p.add_argument(
        "--tolerance",
        type=common.positive_float,
        default=1e-4,
        help="allowed |log-prob| difference (raise it for bf16/fp16)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from rich.table import Table

    from harness.conformance import phantom_items, run_checks
    from harness.tables import user_text, wide_console
    from model_adapters.presets import expand_model
    from model_adapters.registry import get_adapter_class

    name, model_args, _ = expand_model(
        args.name, common.model_args_from(args), args.trust_remote_code
    )
    adapter = get_adapter_class(name)(**model_args)
    with tempfile.TemporaryDirectory(prefix="chexbench-conformance-") as folder:
        report = run_checks(adapter, phantom_items(args.items, folder=folder), args.tolerance)
    table = Table(title=f"Adapter conformance: {args.name}")
    for column in ("check", "result", "figure", "detail"):
        table.add_column(column)
    for c in report.checks:
        colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}[c.verdict]
        # figure and detail quote the adapter (its exceptions, its tokens): shown as text
        table.add_row(c.name, f"[{colour}]{c.verdict}[/]", user_text(c.figure), user_text(c.detail))
    console = wide_console()
    console.print(table)
    console.print("[green]all checks passed[/]" if report.passed else "[red]adapter FAILED[/]")
    return 0 if report.passed else 1
