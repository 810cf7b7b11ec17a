"""Percentile bootstrap confidence intervals, vectorised, with an optional cluster unit.

Several CheXbench questions can share one patient; resampling items as if independent
understates uncertainty, so when the data names a cluster (patient/study) we resample clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.defaults import BOOTSTRAP_SAMPLES, SEED
from harness.results_schema import MetricValue


@dataclass(frozen=True)
class BootstrapCI:
    low: float
    high: float
    method: str  # "percentile-bootstrap/item" or "percentile-bootstrap/cluster"
    B: int
    seed: int


def bootstrap_means(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """B bootstrap replicates of the mean of `values` (resampling clusters when given)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, len(values), size=(B, len(values)))
        return values[idx].mean(axis=1)
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(float)
    pick = rng.integers(0, len(sums), size=(B, len(sums)))
    return sums[pick].sum(axis=1) / counts[pick].sum(axis=1)


def percentile_ci(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> BootstrapCI:
    """95% percentile-bootstrap CI of the mean; cluster bootstrap when clusters are given."""
    reps = bootstrap_means(values, clusters, B, seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    method = "percentile-bootstrap/" + ("cluster" if clusters is not None else "item")
    return BootstrapCI(float(lo), float(hi), method, B, seed)


def derive_seed(seed: int, key: str) -> int:
    """A stable per-key seed, so each subtask gets its own stream yet the run needs one seed.

    Hashing (not Python's salted `hash`) keeps it identical across processes and machines.
    """
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def bootstrap_se(replicates: np.ndarray) -> float | None:
    """Bootstrap standard error: the spread of the replicates (ddof=1); None for a single
    replicate (`-B 1`), where it is undefined (NaN is not JSON, and results are JSON)."""
    return float(np.std(replicates, ddof=1)) if len(replicates) > 1 else None


def ci_from_replicates(
    replicates: np.ndarray, method: str, B: int, seed: int, level: float = 0.95
) -> BootstrapCI:
    """Percentile interval of already-drawn replicates (paired deltas, group means, gaps)."""
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(replicates, dtype=float), [alpha, 1 - alpha])
    return BootstrapCI(float(lo), float(hi), method, B, seed)


def group_mean_replicates(
    parts: Sequence[tuple[np.ndarray, np.ndarray | None]],
    B: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Replicates of the mean over subtasks, each subtask resampled independently.

    Subtasks are independent samples (different datasets), so each gets its own stream
    (`derive_seed(seed, name)`) and the replicates are averaged position-wise. Using the
    same names as the per-subtask CIs reuses exactly the same replicates.
    """
    if not parts:
        raise ValueError("group_mean_replicates: no parts")
    names = list(names) if names is not None else [str(i) for i in range(len(parts))]
    if len(names) != len(parts):
        raise ValueError(f"group_mean_replicates: {len(parts)} parts but {len(names)} names")
    reps = np.zeros(B)
    for (values, clusters), name in zip(parts, names, strict=True):
        reps += bootstrap_means(values, clusters, B, derive_seed(seed, name))
    return reps / len(parts)


def group_mean_ci(
    parts: Sequence[tuple[np.ndarray, np.ndarray | None]],
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    names: Sequence[str] | None = None,
    level: float = 0.95,
) -> tuple[float, BootstrapCI]:
    """The per-task mean over datasets (mean of subtask means) and its percentile CI.

    `parts` is one (per-item values, clusters or None) pair per subtask; the CI method says
    "cluster" when any part was resampled by cluster.
    """
    value = float(np.mean([np.mean(np.asarray(v, dtype=float)) for v, _ in parts]))
    reps = group_mean_replicates(parts, B, seed, names)
    unit = "cluster" if any(c is not None for _, c in parts) else "item"
    return value, ci_from_replicates(
        reps, f"percentile-bootstrap/{unit}/mean-of-subtasks", B, seed, level
    )


def metric_value(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    config: dict[str, Any] | None = None,
) -> MetricValue:
    """A results-schema metric (mean, bootstrap SE, 95% CI, method, n) for per-item values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return MetricValue(value=None, n=0, unavailable="no items scored", config=config)
    reps = bootstrap_means(values, clusters, B, seed)
    unit = "cluster" if clusters is not None else "item"
    ci = ci_from_replicates(reps, f"percentile-bootstrap/{unit}", B, seed)
    return MetricValue(
        value=float(values.mean()),
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=int(len(values)),
        config={**(config or {}), "B": B, "seed": seed},
    )


def group_metric_value(
    parts: Sequence[tuple[np.ndarray, np.ndarray | None]],
    names: Sequence[str],
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> MetricValue:
    """The group row (mean over member subtasks) as a results-schema metric with its CI."""
    if not parts:
        return MetricValue(value=None, n=0, unavailable="no member subtasks scored")
    value = float(np.mean([np.mean(np.asarray(v, dtype=float)) for v, _ in parts]))
    reps = group_mean_replicates(parts, B, seed, names)
    unit = "cluster" if any(c is not None for _, c in parts) else "item"
    ci = ci_from_replicates(reps, f"percentile-bootstrap/{unit}/mean-of-subtasks", B, seed)
    return MetricValue(
        value=value,
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=int(sum(len(v) for v, _ in parts)),
        config={
            "B": B,
            "seed": seed,
            "members": list(names),
            "subtask_seeds": "derive_seed(seed, subtask name)",
        },
    )


def subtask_and_group_metrics(
    parts: dict[str, tuple[np.ndarray, np.ndarray | None]],
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    config: dict[str, Any] | None = None,
) -> tuple[dict[str, MetricValue], MetricValue]:
    """Per-subtask metrics and their group mean, drawing each subtask's replicates once.

    Identical to `metric_value(..., seed=derive_seed(seed, name))` per subtask plus
    `group_metric_value(...)`, at half the cost: the group reuses the subtask replicates.
    """
    metrics: dict[str, MetricValue] = {}
    reps_sum = np.zeros(B)
    means = []
    for name, (values, clusters) in parts.items():
        values = np.asarray(values, dtype=float)
        sub_seed = derive_seed(seed, name)
        if len(values) == 0:
            metrics[name] = MetricValue(value=None, n=0, unavailable="no items scored")
            continue
        reps = bootstrap_means(values, clusters, B, sub_seed)
        unit = "cluster" if clusters is not None else "item"
        ci = ci_from_replicates(reps, f"percentile-bootstrap/{unit}", B, sub_seed)
        metrics[name] = MetricValue(
            value=float(values.mean()),
            stderr=bootstrap_se(reps),
            ci=(ci.low, ci.high),
            ci_method=ci.method,
            n=int(len(values)),
            config={**(config or {}), "B": B, "seed": sub_seed},
        )
        reps_sum += reps
        means.append(float(values.mean()))
    scored = [n for n, m in metrics.items() if m.value is not None]
    if not scored:
        return metrics, MetricValue(value=None, n=0, unavailable="no member subtasks scored")
    reps_group = reps_sum / len(scored)
    unit = "cluster" if any(parts[n][1] is not None for n in scored) else "item"
    ci = ci_from_replicates(reps_group, f"percentile-bootstrap/{unit}/mean-of-subtasks", B, seed)
    group = MetricValue(
        value=float(np.mean(means)),
        stderr=bootstrap_se(reps_group),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=int(sum(metrics[n].n or 0 for n in scored)),
        config={
            "B": B,
            "seed": seed,
            "members": scored,
            "subtask_seeds": "derive_seed(seed, subtask name)",
        },
    )
    return metrics, group
