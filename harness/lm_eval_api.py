"""CheXbench from lm-eval's own Python API, with one import.

    from harness.lm_eval_api import simple_evaluate

    out = simple_evaluate(model="chexagent", model_args="pretrained=smoke",
                          tasks=["chexbench_view_classification_mimic_cxr"],
                          data="phantom/data.json", image_root="phantom", limit=8)
    out["results"]["chexbench_view_classification_mimic_cxr"]["acc_chexbench,none"]

Calling `lm_eval.simple_evaluate` directly needs three things lm-eval does not do by itself:
our adapters registered as lm-eval models (lm-eval has no plug-in discovery for models), a
`TaskManager` that knows our task folder, and the data file in that task manager's metadata
(lm-eval drops `simple_evaluate(metadata=...)` whenever a task manager is passed). This module
does the three and hands over; everything else is lm-eval's `simple_evaluate`, unchanged
(`limit`, `log_samples`, `batch_size`, seeds...). `chexbench lm-eval` uses the same pieces.

Adapter names are lm-eval model names, except where lm-eval already has a model of that name:
our `hf` (any transformers VLM) is `chexbench-hf` in lm-eval, whose own `hf` is its text-only
HFLM, which cannot score images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.run_card import TASKS_DIR

LM_EVAL_PREFIX = "chexbench-"


def register_models(adapter_files: Iterable[str | Path] = ()) -> dict[str, str]:
    """Register every adapter (built-in, installed plug-ins, `adapter_files`) as an lm-eval
    model; returns adapter name -> its lm-eval model name."""
    # lm-eval's own names first (lazy placeholders), so that none of ours takes one of them:
    # an adapter registered as "hf" would make lm-eval's HFLM fail to register later.
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
    from lm_eval.models import MODEL_MAPPING

    from model_adapters.engine import CheXbenchLM
    from model_adapters.registry import available, load_adapter_file, register_all_with_lm_eval

    for path in adapter_files:
        load_adapter_file(path)
    register_all_with_lm_eval()
    names: dict[str, str] = {}
    for name in available():
        if name not in MODEL_MAPPING:
            names[name] = name
            continue
        alias = LM_EVAL_PREFIX + name
        if alias not in MODEL_REGISTRY:
            register_model(alias)(
                type(f"CheXbenchLM_{name}", (CheXbenchLM,), {"adapter_name": name})
            )
        names[name] = alias
    return names


def task_manager(
    data: str | Path | None = None,
    image_root: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    include_defaults: bool = False,
) -> Any:
    """An lm-eval `TaskManager` over our task folder with the data file in its metadata.

    `include_defaults=False` (the default) indexes only our folder: about 3 s instead of the
    ~2 min lm-eval spends indexing its ~14,000 task files; pass True to mix in lm-eval's own
    tasks."""
    from lm_eval.tasks import TaskManager

    meta = dict(metadata or {})
    if data is not None:
        meta["data"] = str(data)
    if image_root is not None:
        meta["image_root"] = str(image_root)
    return TaskManager(
        include_path=str(TASKS_DIR), include_defaults=include_defaults, metadata=meta
    )


def list_tasks(what: str = "tasks") -> str:
    """lm-eval's listing (`tasks`, `groups`, `subtasks` or `tags`) of our folder."""
    manager = task_manager()
    flags = {
        "tasks": {},
        "groups": {"list_subtasks": False, "list_tags": False},
        "subtasks": {"list_groups": False, "list_tags": False},
        "tags": {"list_groups": False, "list_subtasks": False},
    }
    if what not in flags:
        raise UserError(f"lm-eval ls {what}: choose one of {', '.join(flags)}")
    return manager.list_all_tasks(**flags[what])


def ours(tasks: Sequence[str]) -> list[str]:
    """The CheXbench tasks among `tasks` (names starting with `chexbench`)."""
    return [t for t in tasks if str(t).startswith("chexbench")]


def simple_evaluate(
    model: str,
    model_args: str | dict[str, Any] | None = None,
    tasks: Sequence[str] = ("chexbench",),
    data: str | Path | None = None,
    image_root: str | Path | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    adapter_files: Iterable[str | Path] = (),
    trust_remote_code: bool = False,
    include_defaults: bool = False,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """`lm_eval.simple_evaluate` on CheXbench tasks with CheXbench models.

    `model`: an adapter or preset name (`chexbench adapters` lists them) or an lm-eval model
    name; `data`/`image_root`: the data file and its image folder (task metadata, as
    `chexbench lm-eval --metadata '{"data": ..., "image_root": ...}'`); `trust_remote_code`:
    needed by presets whose model runs hub code, never implied. Other keyword arguments go to
    lm-eval's `simple_evaluate` as they are."""
    import lm_eval

    from model_adapters.loading import parse_model_args
    from model_adapters.presets import expand_model

    names = register_models(adapter_files)
    args = parse_model_args(model_args) if isinstance(model_args, str) else dict(model_args or {})
    adapter, args, _ = expand_model(model, args, trust_remote_code)
    if trust_remote_code:
        args["trust_remote_code"] = True
    meta = {**(metadata or {})}
    if ours(tasks) and data is None and "data" not in meta:
        raise UserError(
            f"task {ours(tasks)[0]} needs the data file: simple_evaluate(..., "
            "data='data.json', image_root='DIR')"
        )
    manager = task_manager(data, image_root, meta, include_defaults)
    return lm_eval.simple_evaluate(
        model=names.get(adapter, adapter),
        model_args=args,
        tasks=list(tasks),
        task_manager=manager,
        **kwargs,
    )
