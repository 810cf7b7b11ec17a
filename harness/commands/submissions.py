"""`chexbench submissions list|accept|reject`: the maintainer's review of submissions."""

from __future__ import annotations

import argparse

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submissions",
        help="review leaderboard submissions",
        description="List submissions (with what each run card shows: data not a known "
        "official data.json, subtasks below Table 9's n), or accept / reject one by id. Accepted ones "
        "show on the leaderboard as 'submitted (accepted)'; rejected ones are "
        "hidden.",
    )
    p.add_argument(
        "action",
        choices=["list", "accept", "reject"],
        help="list submissions, or accept / reject the one named by ID",
    )
    p.add_argument("id", nargs="?", help="submission id (from `list`)")
    p.add_argument("--note", help="reason recorded in the submission's history")
    p.add_argument("--results", default="results", help="leaderboard results folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.safe_text import printable
    from leaderboard.submission import list_submissions, review_notes, set_status

    if args.action == "list":
        subs = list_submissions(args.results)
        if not subs:
            print(f"no submissions under {args.results}/submissions")
        for s in subs:
            results = [r for r in s.get("results", []) if isinstance(r, dict)]
            models = ", ".join(str(r.get("model", "?")) for r in results)
            print(
                printable(
                    f"{s.get('id')}  {s.get('status'):<9}  {s.get('submitted_at', '')}  {models}"
                )
            )
            for name, notes in review_notes(args.results, s).items():
                for note in notes:
                    print(printable(f"    {name}: {note}"))
        return 0
    if not args.id:
        raise UserError(f"`chexbench submissions {args.action}` needs a submission ID")
    status = set_status(args.results, args.id, f"{args.action}ed", args.note)
    print(f"{status['id']}: {status['status']}")
    return 0
