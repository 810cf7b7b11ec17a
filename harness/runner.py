"""`chexbench run`: one benchmark run from arguments to a results file, resumable.

A run lives in `<output>/<run_id>/` where run_id is a hash of everything that changes the
numbers (model, model args, tasks, data file hash, mode, seed, limit). Every scored request is
journaled as it finishes, so a killed run re-run with the same arguments picks up where it
stopped and never scores a request twice; the results files are written atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.data import file_sha256
from harness.docs import build_docs, cached_data
from harness.errors import UserError
from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_builder import (
    perception_groups,
    perception_row,
    perception_subtask,
    text_row,
)
from harness.results_schema import ModelInfo, Results, SubtaskResult, validate_results
from harness.run_card import TASKS_DIR, make_run_card
from harness.stats.bootstrap import DEFAULT_B, DEFAULT_SEED
from harness.taxonomy import PERCEPTION_SUBTASKS, TASK_TYPES, TEXT_TASK_NAMES
from harness.text_results import text_subtask

ALL_TASKS = [s.name for s in PERCEPTION_SUBTASKS] + list(TEXT_TASK_NAMES.values())


@dataclass
class RunSpec:
    model: str
    data: str
    model_args: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: ["chexbench"])
    image_root: str | None = None
    image_map: str | None = None
    skip_missing: bool = False
    output: str = "results/runs"
    batch_size: int = 8
    mc_mode: str = "loglikelihood"
    max_gen_toks: int | None = None  # None: each model's official limit (adapter.generation)
    seed: int = DEFAULT_SEED
    bootstrap_B: int = DEFAULT_B
    limit: int | None = None
    source: str = "reproduced"
    display_name: str | None = None
    text_metrics: str = "all"  # "all" or "rouge" (the in-loop metric only)
    show_progress: bool = True
    command: list[str] | None = None


def expand_tasks(names: list[str]) -> list[str]:
    """Task and group names -> the lm-eval task names to run, in Table 2 order."""
    wanted: set[str] = set()
    for raw in names:
        name = raw.strip()
        if name in ("chexbench", "all"):
            wanted.update(ALL_TASKS)
        elif name == "chexbench_perception":
            wanted.update(s.name for s in PERCEPTION_SUBTASKS)
        elif name in ALL_TASKS:
            wanted.add(name)
        elif name in {f"chexbench_{t.slug}" for t in TASK_TYPES}:
            wanted.update(s.name for s in PERCEPTION_SUBTASKS if f"chexbench_{s.task.slug}" == name)
        else:
            raise UserError(f"unknown task {name!r}; see `chexbench tasks`")
    return [t for t in ALL_TASKS if t in wanted]


def run_id_for(spec: RunSpec, tasks: list[str], data_sha: str) -> str:
    identity = {"model": spec.model, "model_args": spec.model_args, "tasks": tasks,
                "data": data_sha, "mc_mode": spec.mc_mode, "seed": spec.seed,
                "limit": spec.limit, "skip_missing": spec.skip_missing,
                "max_gen_toks": spec.max_gen_toks, "image_root": spec.image_root,
                "image_map": spec.image_map}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{spec.model}-{digest[:12]}"


def preflight(spec: RunSpec, tasks: list[str]) -> dict[str, dict[str, int]]:
    """Validate data and images before loading any model; returns exclusions per task."""
    cached_data(spec.data)
    return {t: build_docs(t, spec.data, spec.image_root, spec.image_map, spec.skip_missing)[1]
            for t in tasks}


def run_benchmark(spec: RunSpec) -> Path:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from harness.multiprocess import DataParallel
    from model_adapters.registry import build_lm

    tasks = expand_tasks(spec.tasks)
    excluded = preflight(spec, tasks)
    dp = DataParallel.from_env()  # rank 0 of 1 unless started by a launcher (--num-processes)
    dp.check_shards(spec, tasks)
    data_sha = file_sha256(Path(spec.data))
    run_id = run_id_for(spec, tasks, data_sha)
    run_dir = Path(spec.output) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    started = time.time()
    for name in ("lm_eval", "lm-eval"):  # its per-task notices drown our progress bars
        logging.getLogger(name).setLevel(logging.ERROR)
    lm = build_lm(spec.model, dp.model_args(spec.model, spec.model_args),
                  batch_size=spec.batch_size, mc_mode=spec.mc_mode,
                  max_gen_toks=spec.max_gen_toks, resume_path=dp.journal_path(run_dir),
                  fingerprint=run_id, show_progress=spec.show_progress,
                  rank=dp.rank, world_size=dp.world_size)
    dp.preload(lm.store, run_dir)
    resumed = len(lm.store.done)
    metadata = {"data": str(spec.data), "image_root": spec.image_root,
                "image_map": spec.image_map, "skip_missing": spec.skip_missing}
    # Only our folder: indexing lm-eval's ~14,000 built-in task YAMLs costs ~30 s per run.
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    out = simple_evaluate(
        model=lm, tasks=tasks, task_manager=manager, log_samples=True, limit=spec.limit,
        bootstrap_iters=0, random_seed=spec.seed, numpy_random_seed=spec.seed,
        torch_random_seed=spec.seed, fewshot_random_seed=spec.seed,
    )
    dp.collect(lm)  # rank 0 needs the scores the other ranks computed, for the sample rows
    if out is None:  # non-zero ranks in a multi-process run
        lm.store.close()
        return run_dir

    rows: list[dict[str, Any]] = []
    subtasks: dict[str, SubtaskResult] = {}
    perception_rows: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        examples = sorted(out["samples"][task], key=lambda e: e["doc_id"])
        lm_metrics = out["results"].get(task, {})
        if task in TEXT_TASK_NAMES.values():
            task_rows = [text_row(task, e) for e in examples]
            subtasks[task] = text_subtask(task, task_rows, excluded[task], spec.bootstrap_B,
                                          spec.seed, spec.text_metrics)
        else:
            task_rows = [perception_row(task, e, lm.score_for) for e in examples]
            perception_rows[task] = task_rows
            subtasks[task] = perception_subtask(task, task_rows, lm_metrics, excluded[task],
                                                spec.bootstrap_B, spec.seed)
        rows.extend(task_rows)

    adapter = lm.adapter
    info = adapter.model_info()
    synthetic = _is_synthetic(spec.data)
    model = ModelInfo(
        name=spec.display_name or (adapter.display_name or adapter.name)
        + (" (smoke)" if info.get("smoke") else ""),
        adapter=spec.model, model_args={k: v for k, v in spec.model_args.items()
                                        if "token" not in k.lower() and "key" not in k.lower()},
        **{k: info.get(k) for k in ("model_id", "revision", "weights_sha256", "parameters")},
        smoke=bool(info.get("smoke")),
    )
    card = make_run_card(
        seed=spec.seed, device=str(adapter.device), dtype=str(adapter.dtype).replace("torch.", ""),
        data_file=str(spec.data), data_sha256=data_sha, tasks=tasks,
        wall_time_s=round(time.time() - started, 3), command=spec.command, synthetic=synthetic,
        bootstrap={"B": spec.bootstrap_B, "seed": spec.seed, "unit": "cluster (patient/image)"},
        mc_mode=spec.mc_mode, batch_size=spec.batch_size, engine=lm.stats.as_dict(),
        requests_resumed=resumed, limit=spec.limit, skip_missing=spec.skip_missing,
        num_processes=dp.world_size, generation=lm.generation_settings(),
    )
    results = Results(
        run_id=run_id, source="demo" if synthetic and spec.source == "reproduced" else spec.source,
        model=model, run_card=card, subtasks=subtasks,
        groups=perception_groups(perception_rows, spec.bootstrap_B, spec.seed),
        samples_file="samples.jsonl",
    )
    payload = results.model_dump(mode="json")
    errors = validate_results(payload)
    if errors:
        raise AssertionError(f"results do not match the schema: {errors[:3]}")
    lm.store.close()
    atomic_write_jsonl(run_dir / "samples.jsonl", rows)
    atomic_write_json(run_dir / "results.json", payload)
    atomic_write_json(run_dir / "spec.json", asdict(spec))
    return run_dir / "results.json"


def _is_synthetic(data: str) -> bool:
    """Phantom data sets carry a manifest beside data.json saying so (see harness.phantom)."""
    manifest = Path(data).parent / "phantom.json"
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text()).get("synthetic"))
    except (json.JSONDecodeError, AttributeError):
        return False
