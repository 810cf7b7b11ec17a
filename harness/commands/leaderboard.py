"""`chexbench leaderboard`: serve the Streamlit leaderboard over a results folder."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from harness.commands import args as common
from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="serve the leaderboard web page",
        description="Start the Streamlit leaderboard over every results JSON under --results "
        "(paper rows in results/paper, your runs, submissions). Ctrl-C stops it.",
    )
    p.add_argument(
        "--results",
        default=os.environ.get("CHEXBENCH_RESULTS", "results"),
        help="results folder to show (default: $CHEXBENCH_RESULTS or ./results)",
    )
    p.add_argument("--port", type=common.port, default=8501, help="port (default 8501)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 to share on a network)",
    )
    p.set_defaults(func=run)


def app_path() -> Path:
    # find_spec, not leaderboard.__file__: an editable install may expose the package as a
    # namespace package whose __file__ is None.
    spec = importlib.util.find_spec("leaderboard.app")
    if spec is None or not spec.origin:
        raise UserError("the leaderboard package is not installed (pip install -e .)")
    return Path(spec.origin)


def streamlit_command(results: str, port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--results",
        results,
    ]


def run(args: argparse.Namespace) -> int:
    results = Path(args.results).resolve()
    if not results.is_dir():
        raise UserError(
            f"{results}: results folder not found (pass --results DIR; the paper "
            "rows ship in results/paper of the CheXbench repository)"
        )
    print(f"CheXbench leaderboard on http://{args.host}:{args.port}  (results: {results})")
    env = dict(os.environ, CHEXBENCH_RESULTS=str(results))
    sys.stdout.flush()
    # Become the Streamlit server, so Ctrl-C and `kill PID` reach it directly.
    cmd = streamlit_command(str(results), args.port, args.host)
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
