"""The `chexbench` command line. Subcommands live in harness/commands/, one module each."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from harness import __version__, commands
from harness.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        # Data/input errors from the harness carry file, task and item in their message.
        from harness.data import DataError
        from harness.images import ImageMapError

        if isinstance(exc, DataError | ImageMapError | FileNotFoundError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
