"""`chexbench submit BUNDLE`: validate a results bundle and file it as a pending submission."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a results bundle (zip) to the leaderboard",
        description="Check a zip of results JSON + samples JSONL against the results schema, "
        "size limits and file-name rules, refuse synthetic or smoke runs, check "
        "each run's n and accuracy against its samples, and store it under "
        "RESULTS/submissions/<id>/ with status pending.",
    )
    p.add_argument("bundle", help="the .zip bundle")
    p.add_argument("--results", default="results", help="leaderboard results folder")
    p.add_argument("--submitter", help="name or e-mail recorded with the submission")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.safe_text import printable
    from leaderboard.submission import BundleError, submit_bundle

    path = Path(args.bundle)
    if not path.is_file():
        raise UserError(f"{path}: bundle not found")
    try:
        sub = submit_bundle(path.read_bytes(), args.results, path.name, args.submitter)
    except BundleError as exc:
        raise UserError(f"rejected: {exc}") from exc
    models = ", ".join(printable(r["model"]) for r in sub.status["results"])
    print(f"submitted {sub.id} ({models}): status pending, stored in {sub.folder}")
    for r in sub.status["results"]:
        for note in r.get("notes", []):
            print(f"  {printable(r['file'])}: {printable(note)}")
    return 0
