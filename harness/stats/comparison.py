"""Paired comparison of runs on the items they both scored, and ranks with intervals.

Runs are joined on (task, item_id): a run that skipped items (missing images) is compared only
where both have an answer, and the unmatched counts are reported rather than hidden.
Accuracy is tested with exact McNemar; continuous text metrics with a sign-flip permutation
test; every p-value is Holm-corrected across the whole family of rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.defaults import PERMUTATIONS
from harness.errors import UserError
from harness.stats.bootstrap import derive_seed
from harness.stats.multiplicity import holm
from harness.stats.paired import mcnemar_exact, paired_delta_ci, paired_permutation_test
from harness.stats.ranking import RankPart, rank_table
from harness.stats.run_files import RunFiles
from harness.taxonomy import PERCEPTION_HEADLINE, higher_is_better

ACCURACY = PERCEPTION_HEADLINE  # per-item value is `correct`


@dataclass
class Paired:
    subtask: str
    a: list[dict[str, Any]]
    b: list[dict[str, Any]]


def index_rows(run: RunFiles) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows keyed by (task, item_id); a duplicate key is an error naming the line."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for lineno, row in enumerate(run.rows, 1):
        task, item = row.get("task"), row.get("item_id")
        if not isinstance(task, str) or item is None:
            raise UserError(f"{run.samples_path}: line {lineno}: row lacks 'task' or 'item_id'")
        key = (task, str(item))
        if key in out:
            raise UserError(
                f"{run.samples_path}: line {lineno}: duplicate row for task {task!r} item {item!r}"
            )
        out[key] = row
    return out


def common_keys(indexes: Sequence[dict[tuple[str, str], dict[str, Any]]]) -> list[tuple[str, str]]:
    keys = set(indexes[0])
    for idx in indexes[1:]:
        keys &= set(idx)
    return sorted(keys, key=lambda k: (k[0], _natural(k[1])))


def metric_columns(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]) -> list[str]:
    """Accuracy for perception rows; every text metric both runs report, sorted."""
    if all("correct" in r for r in rows_a + rows_b):
        return [ACCURACY]
    names: set[str] = set()
    for rows in (rows_a, rows_b):
        for r in rows:
            names |= set((r.get("metrics") or {}).keys())
    return sorted(names)


def item_values(rows: list[dict[str, Any]], metric: str) -> np.ndarray:
    """Per-item values (NaN where a row lacks the metric: that item is left out of the pair)."""
    if metric == ACCURACY:
        return np.array([1.0 if r.get("correct") is True else 0.0 for r in rows])
    out = []
    for r in rows:
        v = (r.get("metrics") or {}).get(metric)
        out.append(float(v) if isinstance(v, int | float) and math.isfinite(v) else np.nan)
    return np.array(out, dtype=float)


def compare_pair(
    run_a: RunFiles,
    run_b: RunFiles,
    B: int,
    seed: int,
    n_permutations: int = PERMUTATIONS,
    unit: str = "cluster",
) -> dict[str, Any]:
    """The `comparison` block for two runs (shape in docs/statistics.md)."""
    ia, ib = index_rows(run_a), index_rows(run_b)
    keys = common_keys([ia, ib])
    if not keys:
        raise UserError(
            f"{run_a.path} and {run_b.path} share no (task, item_id): nothing to compare"
        )
    by_task: dict[str, list[tuple[str, str]]] = {}
    for k in keys:
        by_task.setdefault(k[0], []).append(k)
    rows: list[dict[str, Any]] = []
    for subtask, task_keys in by_task.items():
        ra = [ia[k] for k in task_keys]
        rb = [ib[k] for k in task_keys]
        clusters_all = _clusters(ra, unit)
        for metric in metric_columns(ra, rb):
            a, b = item_values(ra, metric), item_values(rb, metric)
            ok = ~(np.isnan(a) | np.isnan(b))
            if not ok.any():
                continue
            a, b = a[ok], b[ok]
            clusters = None if clusters_all is None else clusters_all[ok]
            sub_seed = derive_seed(seed, f"{subtask}/{metric}")
            delta, ci = paired_delta_ci(a, b, clusters, B, sub_seed)
            row: dict[str, Any] = {
                "subtask": subtask,
                "metric": metric,
                "n": int(ok.sum()),
                "a": float(a.mean()),
                "b": float(b.mean()),
                "delta": delta,
                "ci": [ci.low, ci.high],
                "ci_method": ci.method,
                "seed": sub_seed,
            }
            if metric == ACCURACY:
                mc = mcnemar_exact(a, b)
                row.update(test="mcnemar-exact", p=mc.p, only_a=mc.only_a, only_b=mc.only_b)
            else:
                row.update(
                    test="paired-permutation/sign-flip"
                    + ("/cluster" if clusters is not None else ""),
                    p=paired_permutation_test(a, b, clusters, n_permutations, sub_seed),
                )
            rows.append(row)
    adjusted = holm([r["p"] for r in rows])
    for r, p in zip(rows, adjusted, strict=True):
        r["p_holm"] = float(p)
    return {
        "run_a": _describe(run_a),
        "run_b": _describe(run_b),
        "B": B,
        "seed": seed,
        "unit": unit,
        "n_permutations": n_permutations,
        "correction": "holm",
        "family_size": len(rows),
        "delta": "run_a - run_b",
        "unmatched": {"only_a": len(ia) - len(keys), "only_b": len(ib) - len(keys)},
        "rows": rows,
    }


def rank_runs(runs: Sequence[RunFiles], B: int, seed: int, unit: str = "cluster") -> dict[str, Any]:
    """Ranks with intervals: one ranking over perception accuracy (mean over subtasks) and one
    per text metric, each on the items every run scored."""
    names = _unique_names(runs)
    indexes = [index_rows(r) for r in runs]
    keys = common_keys(indexes)
    if not keys:
        raise UserError("the runs share no (task, item_id): nothing to rank")
    by_task: dict[str, list[tuple[str, str]]] = {}
    for k in keys:
        by_task.setdefault(k[0], []).append(k)
    families: dict[str, list[RankPart]] = {}
    for subtask, task_keys in by_task.items():
        per_run = [[idx[k] for k in task_keys] for idx in indexes]
        clusters = _clusters(per_run[0], unit)
        metrics = set(metric_columns(per_run[0], per_run[0]))
        for rows in per_run[1:]:
            metrics &= set(metric_columns(rows, rows))
        for metric in sorted(metrics):
            scores = np.stack([item_values(rows, metric) for rows in per_run])
            ok = ~np.isnan(scores).any(axis=0)
            if not ok.any():
                continue
            sign = 1.0 if higher_is_better(metric) else -1.0
            family = "perception/" + metric if metric == ACCURACY else "text/" + metric
            families.setdefault(family, []).append(
                RankPart(subtask, sign * scores[:, ok], None if clusters is None else clusters[ok])
            )
    rankings = {}
    for family, parts in sorted(families.items()):
        table = rank_table(names, parts, B, derive_seed(seed, family))
        sign = 1.0 if higher_is_better(family.split("/", 1)[1]) else -1.0
        rankings[family] = {
            "members": [p.name for p in parts],
            "higher_is_better": sign > 0,
            "rows": [
                {
                    "run": r.run,
                    "score": sign * r.score,
                    "ci": sorted([sign * r.score_ci[0], sign * r.score_ci[1]]),
                    "rank": r.rank,
                    "rank_ci": list(r.rank_ci),
                }
                for r in table
            ],
        }
    return {
        "runs": [_describe(r) | {"label": n} for r, n in zip(runs, names, strict=True)],
        "B": B,
        "seed": seed,
        "unit": unit,
        "rankings": rankings,
    }


def _clusters(rows: list[dict[str, Any]], unit: str) -> np.ndarray | None:
    if unit == "item":
        return None
    ids = [r.get("cluster_id") for r in rows]
    if any(i is None for i in ids):
        return None
    return np.asarray([str(i) for i in ids])


def _describe(run: RunFiles) -> dict[str, Any]:
    res = run.results or {}
    return {
        "name": run.name,
        "path": str(run.path),
        "run_id": res.get("run_id"),
        "samples_file": str(run.samples_path),
    }


def _unique_names(runs: Sequence[RunFiles]) -> list[str]:
    names: list[str] = []
    for r in runs:
        name = r.name
        while name in names:
            name = f"{name}'"
        names.append(name)
    return names


def _natural(text: str) -> tuple[Any, ...]:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))
