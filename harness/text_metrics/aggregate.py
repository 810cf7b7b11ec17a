"""Turning per-sample scores and labeler outputs into metric objects with bootstrap CIs.

Per-sample metrics (ROUGE-L, BERTScore, RadGraph, RadCliQ, CheXbert exact match) are means,
so their CI is the shared percentile bootstrap of the mean. CheXbert F1 is corpus-level (a
ratio of summed TP/FP/FN), so we bootstrap the per-report counts instead: every count
vector is resampled with the same seed, hence the same draws, and F1 is recomputed on each
replicate. Ratios of resampled means equal ratios of resampled sums, so this is the exact
corpus-level F1 of each bootstrap sample, at item or cluster level alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.results_schema import MetricValue
from harness.stats.bootstrap import bootstrap_means, bootstrap_se, ci_from_replicates


def _method(clusters: np.ndarray | None) -> str:
    return "percentile-bootstrap/" + ("cluster" if clusters is not None else "item")


def mean_metric(
    values: list[float], clusters: np.ndarray | None, B: int, seed: int, config: dict[str, Any]
) -> MetricValue:
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return MetricValue(
            value=None, n=0, config=config, unavailable="no scored items; -; check the inputs"
        )
    reps = bootstrap_means(arr, clusters, B, seed)
    ci = ci_from_replicates(reps, _method(clusters), B, seed)
    return MetricValue(
        value=float(arr.mean()),
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=len(arr),
        config=config,
    )


def _f1(tp: np.ndarray, err: np.ndarray) -> np.ndarray:
    """2TP / (2TP + FP + FN), 0 where undefined (sklearn's zero_division default)."""
    denom = 2 * tp + err
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def label_f1(hyp: np.ndarray, ref: np.ndarray, average: str) -> float:
    """Micro or macro F1 over the label columns (matches sklearn's classification_report)."""
    tp = (hyp & ref).sum(axis=0).astype(float)
    err = ((hyp & ~ref) | (~hyp & ref)).sum(axis=0).astype(float)
    if average == "micro":
        return float(_f1(tp.sum(keepdims=True), err.sum(keepdims=True))[0])
    return float(_f1(tp, err).mean())


def label_f1_replicates(
    hyp: np.ndarray, ref: np.ndarray, average: str, clusters: np.ndarray | None, B: int, seed: int
) -> np.ndarray:
    tp = (hyp & ref).astype(float)
    err = ((hyp & ~ref) | (~hyp & ref)).astype(float)
    if average == "micro":
        return _f1(
            bootstrap_means(tp.sum(axis=1), clusters, B, seed),
            bootstrap_means(err.sum(axis=1), clusters, B, seed),
        )
    per_label = [
        _f1(
            bootstrap_means(tp[:, j], clusters, B, seed),
            bootstrap_means(err[:, j], clusters, B, seed),
        )
        for j in range(tp.shape[1])
    ]
    return np.mean(per_label, axis=0)


def f1_metric(
    value: float,
    hyp: np.ndarray,
    ref: np.ndarray,
    average: str,
    clusters: np.ndarray | None,
    B: int,
    seed: int,
    config: dict[str, Any],
) -> MetricValue:
    hyp, ref = hyp.astype(bool), ref.astype(bool)
    reps = label_f1_replicates(hyp, ref, average, clusters, B, seed)
    method = _method(clusters) + "/corpus-f1"
    ci = ci_from_replicates(reps, method, B, seed)
    return MetricValue(
        value=float(value),
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=method,
        n=int(hyp.shape[0]),
        config=config,
    )


def unavailable(reason: str, config: dict[str, Any] | None = None) -> MetricValue:
    return MetricValue(value=None, unavailable=reason, config=config)
