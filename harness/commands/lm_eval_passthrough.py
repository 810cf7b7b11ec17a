r"""`chexbench lm-eval ...`: lm-eval's own CLI with CheXbench models and tasks registered.

    chexbench lm-eval ls tasks        # the 16 CheXbench tasks and 8 groups (groups, subtasks, tags)
    chexbench lm-eval run --model chexagent --model_args pretrained=smoke \
        --tasks chexbench_view_classification_mimic_cxr \
        --metadata '{"data": "phantom/data.json", "image_root": "phantom"}'
    chexbench lm-eval run --model my_llava --adapter-file my_adapter.py --model_args ... \
        --tasks chexbench --metadata '{"data": "data.json", "image_root": "DATA"}'
    chexbench lm-eval run --model chexbench-hf \
        --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,dtype=bfloat16 --tasks chexbench ...

The data file reaches the tasks as task metadata: --metadata '{"data": FILE, "image_root":
DIR}' (also "image_map" and "skip_missing"; `key=value` pairs work too). Every CheXbench
adapter is an lm-eval model of the same name, except `hf`, which is `chexbench-hf` here
(lm-eval's own `hf` is its text-only HFLM). --adapter-file FILE (repeatable) registers the
adapters a file defines. Only our task folder is indexed when every task asked for is ours
(seconds instead of the minutes lm-eval spends on its ~14,000 task files); `ls` with
--include_path, or a run mixing in lm-eval's own tasks, indexes those too. `--tasks list`
lists our tasks. In Python: `from harness.lm_eval_api import simple_evaluate`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

# lm-eval < 0.4.9 listed tasks with `--tasks list`; 0.4.13 has `ls` and fails on the old form.
LIST_WORDS = {
    "list": "tasks",
    "list_groups": "groups",
    "list_subtasks": "subtasks",
    "list_tags": "tags",
}


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "lm-eval",
        help="lm-eval's own CLI with CheXbench models and tasks registered",
        add_help=False,
    )


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _pop_adapter_files(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without `--adapter-file FILE`, the files): ours, so lm-eval never sees it."""
    from harness.errors import UserError

    rest, files, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--adapter-file":
            if i + 1 >= len(argv):
                raise UserError("--adapter-file needs a file")
            files.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--adapter-file="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, files


def _refuse_uncounted(argv: list[str], models: dict[str, str]) -> None:
    """lm-eval's own models return (log-prob, is_greedy) without the option's token count, so
    they cannot be scored by the CheXbench rule: say so before any model loads."""
    from harness.errors import UserError
    from harness.lm_eval_api import ours

    model, tasks = _flag(argv, "--model"), _flag(argv, "--tasks")
    ours_asked = ours(tasks.split(",")) if tasks else []
    if model is None or not ours_asked or model in models.values():
        return
    hint = (
        f" (CheXbench's {model!r} adapter is --model {models[model]} here)"
        if model in models
        else ""
    )
    raise UserError(
        f"model {model!r} is lm-eval's own, not a CheXbench adapter{hint}, so task "
        f"{ours_asked[0]} cannot be scored by the official rule (mean log-prob per option token "
        "needs the engine's token counts); use one of: " + ", ".join(sorted(models.values()))
    )


@contextlib.contextmanager
def _our_folder_only() -> Iterator[None]:
    """lm-eval's run builds `TaskManager(include_path=...)`, which indexes lm-eval's ~14,000
    task files too (about two minutes) before finding ours: when every task asked for is ours,
    the task manager it builds indexes only our folder."""
    import lm_eval.tasks

    original = lm_eval.tasks.TaskManager

    class OursOnly(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, include_defaults: bool = False, **kwargs):
            super().__init__(*args, include_defaults=include_defaults, **kwargs)

    lm_eval.tasks.TaskManager = OursOnly
    try:
        yield
    finally:
        lm_eval.tasks.TaskManager = original


def run_passthrough(argv: list[str]) -> int:
    if argv in ([], ["--help"], ["-h"]):  # ours, without importing lm-eval or torch
        print(__doc__.strip() + "\n\nlm-eval's own options: chexbench lm-eval run --help")
        return 0
    from harness.errors import UserError, one_line

    try:
        return _run(argv)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    from harness.lm_eval_api import list_tasks, ours, register_models
    from harness.run_card import TASKS_DIR

    argv, adapter_files = _pop_adapter_files(argv)
    include = _flag(argv, "--include_path")
    tasks = _flag(argv, "--tasks")
    if argv[:1] == ["ls"] and include is None:
        what = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else "tasks"
        print(list_tasks(what))
        return 0
    if tasks in LIST_WORDS:
        print(list_tasks(LIST_WORDS[tasks]))
        return 0
    from lm_eval.__main__ import cli_evaluate

    models = register_models(adapter_files)
    _refuse_uncounted(argv, models)
    names = tasks.split(",") if tasks else []
    only_ours = bool(names) and include is None and len(ours(names)) == len(names)
    if include is None and argv[:1] != ["ls"]:
        argv = [*argv, "--include_path", str(TASKS_DIR)]
    old = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        with _our_folder_only() if only_ours else contextlib.nullcontext():
            cli_evaluate()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0
