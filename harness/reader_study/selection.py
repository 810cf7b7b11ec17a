"""Which items a study shows, which system sits on side A, and the ids readers see.

Everything here is a pure function of the study seed and the item ids, so an export can be
rebuilt byte for byte, and the side of an item never depends on the order files were read in.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import DataError, load_data
from harness.errors import UserError
from harness.reader_study.design import PHYSICIAN, TASK_CODES
from harness.stats.bootstrap import derive_seed
from harness.stats.run_files import RunFiles, load_run
from harness.taxonomy import TEXT_TASK_NAMES

STRATIFY = ("none", "dataset", "score")


@dataclass(frozen=True)
class System:
    """One side of the comparison: a model run, or the physician-written reference."""

    name: str
    run: str | None = None  # results JSON path; None for the physician
    results_sha256: str | None = None
    smoke: bool = False
    synthetic: bool = False
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    item_id: str
    dataset: str
    cluster_id: str | None
    image_paths: tuple[str, ...]
    task_input: str  # indication (generation) or findings (summarization), as in data.json
    text_x: str
    text_y: str
    metrics_x: dict[str, float]
    metrics_y: dict[str, float] | None
    where: str  # "samples.jsonl row N", for messages


def resolve_run_path(path: str | Path) -> Path:
    """A run folder (holding results.json) or a results JSON path."""
    path = Path(path)
    if path.is_dir():
        if (path / "results.json").is_file():
            return path / "results.json"
        inner = sorted(p.parent for p in path.glob("*/results.json"))
        hint = f"; did you mean {', '.join(map(str, inner))}?" if inner else ""
        raise UserError(f"{path}: no results.json in this folder{hint}")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _system(run: RunFiles) -> System:
    results = run.results or {}
    model = results.get("model") or {}
    card = results.get("run_card") or {}
    return System(
        name=run.name,
        run=str(run.path),
        results_sha256=_sha256(run.path),
        smoke=bool(model.get("smoke")),
        synthetic=bool(card.get("synthetic")),
        model=model,
    )


def _task_rows(run: RunFiles, task: str) -> dict[str, tuple[dict[str, Any], str]]:
    full = TEXT_TASK_NAMES[task]
    out: dict[str, tuple[dict[str, Any], str]] = {}
    for i, row in enumerate(run.rows, 1):
        if row.get("task") != full and not str(row.get("task", "")).startswith(full + "_"):
            continue
        where = f"{run.samples_path} row {i}"
        item_id = row.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            raise UserError(f"{where}: task {task}: row has no string 'item_id'")
        for key in ("prediction", "reference"):
            if not isinstance(row.get(key), str):
                raise UserError(f"{where}: task {task}, item {item_id}: '{key}' must be a string")
        if item_id in out:
            raise UserError(
                f"{where}: task {task}: duplicate item {item_id} (first at {out[item_id][1]})"
            )
        out[item_id] = (row, where)
    if not out:
        raise UserError(f"{run.samples_path}: no rows for task {task} (is --task right?)")
    return out


def _numeric(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
    }


def data_file_for(runs: list[RunFiles], override: str | Path | None) -> Path:
    if override:
        return Path(override)
    recorded = {((r.results or {}).get("run_card") or {}).get("data_file") for r in runs}
    recorded.discard(None)
    if len(recorded) != 1:
        raise UserError(
            "cannot tell which data.json the runs used (their run cards record "
            f"{sorted(recorded) or 'none'}); pass --data PATH"
        )
    return Path(recorded.pop())


def load_candidates(
    run_paths: list[str | Path], task: str, data_path: str | Path | None
) -> tuple[list[Candidate], System, System, Path]:
    """Items every run answered, with the task input from data.json.

    One run: the model against the physician reference. Two runs: model against model (the
    first run is X, whose preference scores are positive).
    """
    if task not in TEXT_TASK_NAMES:
        raise UserError(f"--task {task!r}: choose one of {sorted(TEXT_TASK_NAMES)}")
    if not 1 <= len(run_paths) <= 2:
        raise UserError("--runs takes one run (model vs physician) or two (model vs model)")
    runs = [load_run(resolve_run_path(p)) for p in run_paths]
    rows = [_task_rows(r, task) for r in runs]
    data_path = data_file_for(runs, data_path)
    try:
        data = load_data(data_path)
    except DataError as exc:
        raise UserError(
            f"{exc} (the reader study shows each item's input from data.json; pass --data PATH)"
        ) from exc
    inputs = {t.item_id: t for t in data.text if t.task == task}
    x = _system(runs[0])
    y = _system(runs[1]) if len(runs) == 2 else System(name=PHYSICIAN)
    if len(runs) == 2 and x.name == y.name:
        raise UserError(f"both runs are named {x.name!r}; the study could not tell them apart")
    out = []
    for item_id, (row, where) in rows[0].items():
        if len(rows) == 2 and item_id not in rows[1]:
            continue
        text_item = inputs.get(item_id)
        if text_item is None:
            raise UserError(f"{where}: item {item_id} is not in {data_path} (wrong --data?)")
        if (text_item.reference or "").strip() != row["reference"].strip():
            raise UserError(
                f"{where}: item {item_id}: the reference differs from {data_path}; "
                "the run was made on other data (pass the right --data)"
            )
        if not row["reference"].strip():
            continue
        task_input = (
            text_item.indication if task == "findings_generation" else text_item.findings
        ) or ""
        second = rows[1][item_id][0] if len(rows) == 2 else None
        out.append(
            Candidate(
                item_id=item_id,
                dataset=str(row.get("dataset") or text_item.dataset),
                cluster_id=str(row.get("cluster_id") or text_item.cluster_id),
                image_paths=tuple(row.get("image_paths") or text_item.image_paths),
                task_input=task_input,
                text_x=row["prediction"],
                text_y=second["prediction"] if second else row["reference"],
                metrics_x=_numeric(row.get("metrics")),
                metrics_y=_numeric(second.get("metrics")) if second else None,
                where=where,
            )
        )
    if not out:
        raise UserError(f"the runs share no scorable item for task {task}")
    return out, x, y, data_path


def _hash_rank(seed: int, salt: str, key: str) -> str:
    return hashlib.sha256(f"{int(seed)}:{salt}:{key}".encode()).hexdigest()


def strata(cands: list[Candidate], stratify: str, score_metric: str) -> dict[str, str]:
    """Stratum per item: its dataset, or whether X's automatic score is above the median."""
    if stratify == "none":
        return {c.item_id: "all" for c in cands}
    if stratify == "dataset":
        return {c.item_id: c.dataset for c in cands}
    if stratify != "score":
        raise UserError(f"--stratify {stratify!r}: choose one of {STRATIFY}")
    missing = [c.where for c in cands if score_metric not in c.metrics_x]
    if missing:
        raise UserError(
            f"--stratify score needs metric {score_metric!r} on every row; "
            f"missing at {missing[0]} (and {len(missing) - 1} more)"
        )
    median = float(np.median([c.metrics_x[score_metric] for c in cands]))
    return {c.item_id: ("high" if c.metrics_x[score_metric] > median else "low") for c in cands}


def select(
    cands: list[Candidate], n: int, seed: int, stratify: str = "none", score_metric: str = "rougeL"
) -> tuple[list[Candidate], dict[str, str]]:
    """`n` items, allocated to strata in proportion to their size (largest remainder)."""
    if n < 2:
        raise UserError("--n must be at least 2")
    if n > len(cands):
        raise UserError(f"--n {n}: only {len(cands)} items are available for this task")
    stratum_of = strata(cands, stratify, score_metric)
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in sorted(cands, key=lambda c: c.item_id):
        groups[stratum_of[c.item_id]].append(c)
    names = sorted(groups)
    quota = {s: n * len(groups[s]) / len(cands) for s in names}
    alloc = {s: int(np.floor(quota[s])) for s in names}
    for s in sorted(names, key=lambda s: (-(quota[s] - alloc[s]), s))[: n - sum(alloc.values())]:
        alloc[s] += 1
    chosen: list[Candidate] = []
    for s in names:
        rng = np.random.default_rng(derive_seed(seed, f"select:{s}"))
        picks = rng.permutation(len(groups[s]))[: alloc[s]]
        chosen.extend(groups[s][i] for i in sorted(picks))
    return chosen, {c.item_id: stratum_of[c.item_id] for c in chosen}


def assign_sides(item_ids: list[str], seed: int) -> dict[str, str]:
    """Side of X per item: items ranked by a hash of (seed, item) alternate A, B, A, ...

    The hash makes the side unpredictable from the item and stable under reordering; the
    alternation makes the split exact (within one when the count is odd).
    """
    ranked = sorted(item_ids, key=lambda i: _hash_rank(seed, "side", i))
    return {item: ("A" if k % 2 == 0 else "B") for k, item in enumerate(ranked)}


def opaque_ids(item_ids: list[str], seed: int, task: str) -> dict[str, str]:
    """Readers' ids (fg01, fg02, ...), numbered by a hash independent of the side hash."""
    ranked = sorted(item_ids, key=lambda i: _hash_rank(seed, "id", i))
    width = max(2, len(str(len(ranked))))
    return {item: f"{TASK_CODES[task]}{k:0{width}d}" for k, item in enumerate(ranked, 1)}


def reader_order(opaque: list[str], seed: int, reader: str) -> list[str]:
    """Each reader sees the items in their own seeded order, against order effects."""
    rng = np.random.default_rng(derive_seed(seed, f"order:{reader}"))
    base = sorted(opaque)
    return [base[i] for i in rng.permutation(len(base))]


def study_id(payload: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"rs{digest[:10]}"
