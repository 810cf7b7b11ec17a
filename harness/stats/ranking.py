"""Leaderboard ranks with uncertainty.

A rank is a function of noisy scores, so "model X is #2" needs an interval too. We bootstrap
the items once per replicate for all runs together (the runs answered the same items), rank the
runs within each replicate, and report the 2.5-97.5% range of each run's rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from harness.defaults import BOOTSTRAP_SAMPLES, SEED
from harness.stats.bootstrap import derive_seed


@dataclass(frozen=True)
class RankPart:
    """One subtask: per-item scores of every run on the items all runs share."""

    name: str
    scores: np.ndarray  # shape (n_runs, n_items)
    clusters: np.ndarray | None = None


@dataclass(frozen=True)
class RankRow:
    run: str
    score: float
    score_ci: tuple[float, float]
    rank: int
    rank_ci: tuple[int, int]


def paired_replicate_means(
    scores: np.ndarray, clusters: np.ndarray | None, B: int, seed: int
) -> np.ndarray:
    """(n_runs, B) bootstrap means, with the SAME resample for every run (paired).

    Draws exactly like `bootstrap_means`, so one run's row equals its per-subtask replicates.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    rng = np.random.default_rng(seed)
    if clusters is None:
        n = scores.shape[1]
        weights = _counts(rng.integers(0, n, size=(B, n)), n)
        return (weights @ scores.T).T / n
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    k = int(inverse.max()) + 1
    sums = np.stack([np.bincount(inverse, weights=row, minlength=k) for row in scores])
    counts = np.bincount(inverse, minlength=k).astype(float)
    weights = _counts(rng.integers(0, k, size=(B, k)), k)
    return (weights @ sums.T).T / (weights @ counts)


def rank_table(
    runs: Sequence[str],
    parts: Sequence[RankPart],
    B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> list[RankRow]:
    """Ranks (1 = best) by the mean over parts, with bootstrap score and rank intervals."""
    if not parts:
        raise ValueError("rank_table: no subtasks shared by all runs")
    n_runs = len(runs)
    point = np.zeros(n_runs)
    reps = np.zeros((n_runs, B))
    for part in parts:
        if part.scores.shape[0] != n_runs:
            raise ValueError(
                f"rank_table: part {part.name} has {part.scores.shape[0]} runs, expected {n_runs}"
            )
        point += part.scores.mean(axis=1)
        reps += paired_replicate_means(part.scores, part.clusters, B, derive_seed(seed, part.name))
    point /= len(parts)
    reps /= len(parts)
    point_rank = rankdata(-point, method="min").astype(int)
    rep_ranks = rankdata(-reps, axis=0, method="min")
    alpha = (1 - level) / 2
    score_lo, score_hi = np.quantile(reps, [alpha, 1 - alpha], axis=1)
    rank_lo = np.floor(np.quantile(rep_ranks, alpha, axis=1)).astype(int)
    rank_hi = np.ceil(np.quantile(rep_ranks, 1 - alpha, axis=1)).astype(int)
    rows = [
        RankRow(
            run,
            float(point[i]),
            (float(score_lo[i]), float(score_hi[i])),
            int(point_rank[i]),
            (int(rank_lo[i]), int(rank_hi[i])),
        )
        for i, run in enumerate(runs)
    ]
    return sorted(rows, key=lambda r: (r.rank, r.run))


def _counts(picks: np.ndarray, n: int) -> np.ndarray:
    """How often each index was drawn in each replicate, as a (B, n) matrix."""
    B = picks.shape[0]
    flat = (picks + (np.arange(B)[:, None] * n)).ravel()
    return np.bincount(flat, minlength=B * n).reshape(B, n).astype(float)
