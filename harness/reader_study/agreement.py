"""Inter-reader agreement and metric correlation, each with a bootstrap interval over items.

Krippendorff's alpha (ordinal) is computed on the un-blinded -10..10 scores, not on the raw
A/B codes: what readers should agree on is which system is better, and the per-item side flip
would otherwise change the ordinal distances. Both intervals resample items (the unit that
varies in a study of 20 cases); failed replicates (no variation at all) are dropped and counted.
"""

from __future__ import annotations

import warnings

import krippendorff
import numpy as np
from scipy.stats import kendalltau

from harness.reader_study.design import SCORE_DOMAIN
from harness.results_schema import MetricValue
from harness.stats.bootstrap import bootstrap_se, ci_from_replicates


def ordinal_alpha(matrix: np.ndarray) -> float:
    """Alpha for a readers x items matrix (NaN = not rated); NaN when it is undefined."""
    m = np.asarray(matrix, dtype=float)
    values = m[~np.isnan(m)]
    if m.shape[1] < 2 or len(np.unique(values)) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            krippendorff.alpha(
                reliability_data=m, level_of_measurement="ordinal", value_domain=list(SCORE_DOMAIN)
            )
        )


def _metric(
    value: float, reps: list[float], method: str, n: int, B: int, seed: int, config: dict
) -> MetricValue:
    good = np.array([r for r in reps if np.isfinite(r)])
    cfg = {**config, "B": B, "seed": seed, "failed_replicates": int(B - len(good))}
    if not np.isfinite(value):
        return MetricValue(
            value=None, n=n, config=cfg, unavailable="undefined: the ratings have no variation"
        )
    if len(good) < B / 2:
        return MetricValue(value=value, n=n, config=cfg, ci_method=method)
    ci = ci_from_replicates(good, method, B, seed)
    return MetricValue(
        value=value,
        stderr=bootstrap_se(good),
        ci=(ci.low, ci.high),
        ci_method=method,
        n=n,
        config=cfg,
    )


def alpha_metric(matrix: np.ndarray, B: int, seed: int) -> MetricValue:
    m = np.asarray(matrix, dtype=float)
    rng = np.random.default_rng(seed)
    reps = [ordinal_alpha(m[:, rng.integers(0, m.shape[1], m.shape[1])]) for _ in range(B)]
    return _metric(
        ordinal_alpha(m),
        reps,
        "percentile-bootstrap/item",
        int(m.shape[1]),
        B,
        seed,
        {
            "statistic": "krippendorff_alpha",
            "level": "ordinal",
            "value_domain": list(SCORE_DOMAIN),
            "n_readers": int(m.shape[0]),
        },
    )


def _tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    res = kendalltau(x, y)
    return float(res.statistic), float(res.pvalue)


def kendall_metric(auto: np.ndarray, preference: np.ndarray, B: int, seed: int) -> MetricValue:
    """Kendall's tau-b between an automatic metric and the mean reader preference per item."""
    x, y = np.asarray(auto, dtype=float), np.asarray(preference, dtype=float)
    tau, p = _tau(x, y)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(B):
        idx = rng.integers(0, len(x), len(x))
        reps.append(_tau(x[idx], y[idx])[0])
    return _metric(
        tau,
        reps,
        "percentile-bootstrap/item",
        len(x),
        B,
        seed,
        {"statistic": "kendall_tau_b", "p_value": None if np.isnan(p) else p},
    )
