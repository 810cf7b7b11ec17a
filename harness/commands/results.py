"""`chexbench results show FILE`: print a results file as the paper's tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="inspect results files")
    inner = p.add_subparsers(dest="results_command", metavar="ACTION")
    show = inner.add_parser("show", help="print the Table-2-style table of a results JSON")
    show.add_argument("file", help="results.json (or a run folder)")
    show.set_defaults(func=show_results)
    check = inner.add_parser(
        "validate",
        help="check a results JSON against the schema and the numeric rules "
        "(finite, in range, lo <= value <= hi)",
    )
    check.add_argument("file", help="the results JSON to check against the schema")
    check.set_defaults(func=validate)
    schema = inner.add_parser("schema", help="print the published JSON Schema")
    schema.set_defaults(func=print_schema)


def _path(path_arg: str) -> Path:
    path = Path(path_arg)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    return path


def show_results(args: argparse.Namespace) -> int:
    from harness.results_schema import parse_results
    from harness.tables import print_results

    path = _path(args.file)
    results = parse_results(path.read_bytes(), str(path))  # ResultsError: one line, exit 2
    print_results(results.model_dump(mode="json"))
    return 0


def validate(args: argparse.Namespace) -> int:
    """Exit 0 when valid, 1 with every reason when not (JSON syntax included)."""
    from harness.results_schema import ResultsError, parse_json, validate_results
    from harness.safe_text import printable

    path = _path(args.file)
    try:
        errors = validate_results(parse_json(path.read_bytes(), str(path)))
    except ResultsError as exc:
        errors = [str(exc).removeprefix(f"{path}: ")]
    for e in errors:
        print(printable(f"{path}: {e}"))
    print("valid" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


def print_schema(args: argparse.Namespace) -> int:
    from harness.results_schema import SCHEMA_PATH

    print(SCHEMA_PATH.read_text())
    return 0
