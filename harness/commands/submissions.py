"""`chexbench submissions list|accept|reject`: the maintainer's review of submissions."""

from __future__ import annotations

import argparse

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submissions", help="review leaderboard submissions",
        description="List submissions, or accept / reject one by id. Accepted ones show on the "
                    "leaderboard as 'submitted (accepted)'; rejected ones are hidden.")
    p.add_argument("action", choices=["list", "accept", "reject"],
                   help="list submissions, or accept / reject the one named by ID")
    p.add_argument("id", nargs="?", help="submission id (from `list`)")
    p.add_argument("--note", help="reason recorded in the submission's history")
    p.add_argument("--results", default="results", help="leaderboard results folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leaderboard.submission import BundleError, list_submissions, set_status

    if args.action == "list":
        subs = list_submissions(args.results)
        if not subs:
            print(f"no submissions under {args.results}/submissions")
        for s in subs:
            models = ", ".join(r.get("model", "?") for r in s.get("results", []))
            print(f"{s.get('id')}  {s.get('status'):<9}  {s.get('submitted_at', '')}  {models}")
        return 0
    if not args.id:
        raise UserError(f"`chexbench submissions {args.action}` needs a submission ID")
    try:
        status = set_status(args.results, args.id, f"{args.action}ed", args.note)
    except BundleError as exc:
        raise UserError(str(exc)) from exc
    print(f"{status['id']}: {status['status']}")
    return 0
