"""Percentile bootstrap confidence intervals, vectorised, with an optional cluster unit.

Several CheXbench questions can share one patient; resampling items as if independent
understates uncertainty, so when the data names a cluster (patient/study) we resample clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_B = 1000
DEFAULT_SEED = 1234


@dataclass(frozen=True)
class BootstrapCI:
    low: float
    high: float
    method: str  # "percentile-bootstrap/item" or "percentile-bootstrap/cluster"
    B: int
    seed: int


def bootstrap_means(values: np.ndarray, clusters: np.ndarray | None = None, B: int = DEFAULT_B,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
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


def percentile_ci(values: np.ndarray, clusters: np.ndarray | None = None, B: int = DEFAULT_B,
                  seed: int = DEFAULT_SEED, level: float = 0.95) -> BootstrapCI:
    """95% percentile-bootstrap CI of the mean; cluster bootstrap when clusters are given."""
    reps = bootstrap_means(values, clusters, B, seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    method = "percentile-bootstrap/" + ("cluster" if clusters is not None else "item")
    return BootstrapCI(float(lo), float(hi), method, B, seed)
