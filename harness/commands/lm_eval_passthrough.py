r"""`chexbench lm-eval ...`: lm-eval's own CLI with CheXbench models and tasks registered.

lm-eval has no plug-in discovery for models, so this registers every adapter (built-in,
installed plug-ins) as an lm-eval model and adds our task folder to --include_path, then
hands over. Example:

    chexbench lm-eval run --model chexagent --model_args pretrained=smoke \
        --tasks chexbench_view_classification_mimic_cxr \
        --metadata '{"data": "phantom/data.json", "image_root": "phantom"}'
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("lm-eval", help="lm-eval's own CLI with CheXbench models and tasks registered",
                   add_help=False)


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _refuse_uncounted(argv: list[str]) -> None:
    """lm-eval's own models return (log-prob, is_greedy) without the option's token count, so
    they cannot be scored by the CheXbench rule: say so before any model loads."""
    from harness.errors import UserError
    from model_adapters.registry import available

    model, tasks = _flag(argv, "--model"), _flag(argv, "--tasks")
    if model is None or tasks is None or model in available():
        return
    ours = [t for t in tasks.split(",") if t.startswith("chexbench")]
    if ours:
        raise UserError(
            f"model {model!r} is not a CheXbench adapter, so task {ours[0]} cannot be scored by "
            "the official rule (mean log-prob per option token needs the engine's token "
            "counts); use one of: " + ", ".join(sorted(available())))


def run_passthrough(argv: list[str]) -> int:
    if argv in ([], ["--help"], ["-h"]):  # ours, without importing lm-eval or torch
        print(__doc__.strip() + "\n\nlm-eval's own options: chexbench lm-eval run --help")
        return 0
    from lm_eval.__main__ import cli_evaluate

    from harness.run_card import TASKS_DIR
    from model_adapters.registry import register_all_with_lm_eval

    register_all_with_lm_eval()
    _refuse_uncounted(argv)
    if not any(a.startswith("--include_path") for a in argv) and argv[:1] != ["ls"]:
        argv = [*argv, "--include_path", str(TASKS_DIR)]
    old = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0
