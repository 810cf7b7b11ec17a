"""The `chexbench` command line. Subcommands live in harness/commands/, one module each."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from harness import __version__, commands
from harness.errors import UserError, one_line


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported in one line like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="chexbench",
        description="CheXbench: evaluate chest X-ray foundation models (CheXagent paper, section 5).",
    )
    parser.add_argument("--version", action="version", version=f"chexbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `chexbench lm-eval ...` hands the rest of the line to lm-eval untouched.
    if argv[:1] == ["lm-eval"]:
        from harness.commands.lm_eval_passthrough import run_passthrough

        return run_passthrough(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own one-line usage error (exit 2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = list(argv)  # for commands that re-read their own options (run --config)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        # A user's mistake: one line, no traceback. Anything else is a bug and keeps its own.
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
