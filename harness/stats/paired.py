"""Paired comparisons of two runs on the same items.

Two models scored on the same questions are correlated (easy items are easy for both), so
unpaired CIs overlap even when one model is reliably better. Pairing removes the shared
item difficulty: the delta's CI resamples items (or clusters) jointly for both runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.defaults import BOOTSTRAP_SAMPLES, PERMUTATIONS, SEED
from harness.stats.bootstrap import BootstrapCI, bootstrap_means, ci_from_replicates


@dataclass(frozen=True)
class McNemarResult:
    only_a: int  # items A got right and B got wrong
    only_b: int  # items B got right and A got wrong
    p: float  # exact two-sided p-value (binomial on the discordant pairs)


def paired_delta_ci(
    a: np.ndarray,
    b: np.ndarray,
    clusters: np.ndarray | None = None,
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> tuple[float, BootstrapCI]:
    """mean(a) - mean(b) over paired items, with a paired (joint-resampling) percentile CI.

    Resampling the per-item differences is the same as resampling the pairs: the delta of
    two means over one index set is the mean of the differences (also for the cluster ratio).
    """
    a, b = _paired(a, b)
    diff = a - b
    reps = bootstrap_means(diff, clusters, B, seed)
    unit = "cluster" if clusters is not None else "item"
    return float(diff.mean()), ci_from_replicates(
        reps, f"paired-percentile-bootstrap/{unit}", B, seed, level
    )


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact McNemar test: only discordant items carry information about which is better."""
    a, b = _paired(correct_a, correct_b)
    a, b = a.astype(bool), b.astype(bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    if only_a + only_b == 0:
        return McNemarResult(0, 0, 1.0)
    from statsmodels.stats.contingency_tables import mcnemar  # slow import: only when used

    table = [[int(np.sum(a & b)), only_a], [only_b, int(np.sum(~a & ~b))]]
    return McNemarResult(only_a, only_b, float(min(1.0, mcnemar(table, exact=True).pvalue)))


def paired_permutation_test(
    a: np.ndarray,
    b: np.ndarray,
    clusters: np.ndarray | None = None,
    n_permutations: int = PERMUTATIONS,
    seed: int = SEED,
) -> float:
    """Two-sided sign-flip permutation p-value for mean(a - b) = 0 on continuous metrics.

    Under the null the two runs are exchangeable within each pair, so the sign of each
    difference is a coin flip; with clusters the whole cluster's differences flip together.
    The observed statistic counts as one permutation, so p is never 0.
    """
    a, b = _paired(a, b)
    diff = a - b
    if clusters is not None:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        diff = np.bincount(inverse, weights=diff)
    n = len(diff)
    observed = abs(diff.sum())
    if n == 0 or observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, min(n_permutations, 4_000_000 // max(n, 1)))
    done = 0
    tol = 1e-12 * max(1.0, float(np.abs(diff).sum()))
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        stats = np.abs(signs @ diff)
        hits += int(np.sum(stats >= observed - tol))
        done += m
    return (hits + 1) / (n_permutations + 1)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D and equal length, got {a.shape} and {b.shape}")
    return a, b
