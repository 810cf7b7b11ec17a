"""`chexbench results show FILE`: print a results file as the paper's tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="inspect results files")
    inner = p.add_subparsers(dest="results_command", metavar="ACTION")
    show = inner.add_parser("show", help="print the Table-2-style table of a results JSON")
    show.add_argument("file", help="results.json (or a run folder)")
    show.set_defaults(func=show_results)
    check = inner.add_parser("validate", help="check a results JSON against the schema")
    check.add_argument("file", help="the results JSON to check against the schema")
    check.set_defaults(func=validate)
    schema = inner.add_parser("schema", help="print the published JSON Schema")
    schema.set_defaults(func=print_schema)


def _load(path_arg: str) -> dict:
    path = Path(path_arg)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def show_results(args: argparse.Namespace) -> int:
    from harness.results_schema import validate_results
    from harness.tables import print_results

    data = _load(args.file)
    errors = validate_results(data)
    if errors:
        raise UserError(f"{args.file}: not a CheXbench results file: {errors[0]}")
    print_results(data)
    return 0


def validate(args: argparse.Namespace) -> int:
    from harness.results_schema import validate_results

    errors = validate_results(_load(args.file))
    for e in errors:
        print(f"{args.file}: {e}")
    print("valid" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


def print_schema(args: argparse.Namespace) -> int:
    from harness.results_schema import SCHEMA_PATH

    print(SCHEMA_PATH.read_text())
    return 0
