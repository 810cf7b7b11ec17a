"""`chexbench scorers status|fetch`: the report-metric checkpoints, where they are, and getting
them, so a missing one is found before a long run rather than after it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from harness.commands import args as common

if TYPE_CHECKING:
    from harness.text_metrics.config import TextMetricsConfig

SCORERS = ("chexbert", "radgraph", "bertscore", "radcliq")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        default=None,
        help="scorer cache (default: $CHEXBENCH_CACHE/scorers or ~/.cache/chexbench/scorers)",
    )
    common.add_bertscore_preset(p)
    p.add_argument(
        "--radgraph-model-type",
        default="radgraph",
        choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"],
        help="RadGraph checkpoint family (default %(default)s)",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "scorers", help="status and download of report-metric checkpoints", description=__doc__
    )
    inner = p.add_subparsers(dest="scorers_command", metavar="ACTION", required=True)
    status = inner.add_parser("status", help="present/missing, path and size of each scorer file")
    _add_common(status)
    status.set_defaults(func=run_status)
    get = inner.add_parser("fetch", help="download missing scorer files from the Hugging Face hub")
    _add_common(get)
    get.add_argument(
        "--only", action="append", choices=SCORERS, help="fetch only this scorer (repeatable)"
    )
    get.set_defaults(func=run_fetch)


def config_from(args: argparse.Namespace) -> TextMetricsConfig:
    from harness.text_metrics.config import TextMetricsConfig

    return TextMetricsConfig.with_bertscore_preset(
        args.bertscore_preset,
        cache_dir=args.cache_dir,
        radgraph_model_type=args.radgraph_model_type,
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def run_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.text_metrics.cache import cache_root, scorer_files

    cfg = config_from(args)
    table = Table(title=f"scorer cache: {cache_root(cfg.cache_dir)}")
    for col in ("scorer", "file", "status", "size", "path", "source"):
        table.add_column(col)
    missing = 0
    for f in scorer_files(cfg):
        missing += not f.present
        table.add_row(
            f.scorer,
            f.what,
            "present" if f.present else "MISSING",
            _size(f.size) if f.present else "-",
            str(f.path),
            f.source,
        )
    Console(width=200).print(table)
    if missing:
        print(
            f"{missing} missing: run `chexbench scorers fetch` (needs the internet), or place "
            "the files at the paths shown."
        )
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from harness.text_metrics.cache import cache_root, fetch

    cfg = config_from(args)
    got = fetch(cfg, set(args.only) if args.only else None)
    print(
        f"fetched {len(got)} item(s) into {cache_root(cfg.cache_dir)}"
        if got
        else "nothing to fetch: every requested scorer is present"
    )
    return 0
