"""Bootstrap CIs: coverage on simulated data, cluster vs iid, group means, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results_schema import MetricValue
from harness.stats import (
    bootstrap_means,
    derive_seed,
    group_mean_ci,
    group_metric_value,
    metric_value,
    percentile_ci,
    subtask_and_group_metrics,
)

N_SIMULATIONS = 400
B = 300


def _covers(ci, truth: float) -> bool:
    return ci.low <= truth <= ci.high


def test_percentile_bootstrap_covers_true_accuracy_92_to_98_percent():
    rng = np.random.default_rng(7)
    truth = 0.7
    hits = 0
    for sim in range(N_SIMULATIONS):
        correct = (rng.random(300) < truth).astype(float)
        hits += _covers(percentile_ci(correct, None, B, seed=sim), truth)
    coverage = hits / N_SIMULATIONS
    assert 0.92 <= coverage <= 0.98, coverage


def test_cluster_bootstrap_covers_clustered_data_where_iid_undercovers():
    """Five questions per patient with strong patient effects: iid resampling treats 500
    correlated answers as independent and its CI is far too narrow."""
    rng = np.random.default_rng(11)
    truth, n_clusters, per_cluster = 0.7, 100, 5
    hits_cluster = hits_iid = 0
    clusters = np.repeat(np.arange(n_clusters), per_cluster)
    for sim in range(N_SIMULATIONS):
        p_patient = rng.beta(0.35, 0.15, size=n_clusters)  # mean 0.7, intra-cluster corr 2/3
        correct = (rng.random((n_clusters, per_cluster)) < p_patient[:, None]).ravel()
        hits_cluster += _covers(percentile_ci(correct, clusters, B, seed=sim), truth)
        hits_iid += _covers(percentile_ci(correct, None, B, seed=sim), truth)
    cov_cluster, cov_iid = hits_cluster / N_SIMULATIONS, hits_iid / N_SIMULATIONS
    assert 0.90 <= cov_cluster <= 0.98, cov_cluster
    assert cov_iid < 0.80, cov_iid
    assert cov_cluster - cov_iid > 0.2


def test_group_mean_ci_is_mean_of_subtasks_and_reuses_subtask_replicates():
    rng = np.random.default_rng(3)
    parts = [((rng.random(n) < p).astype(float), None) for n, p in ((100, 0.4), (300, 0.9))]
    value, ci = group_mean_ci(parts, B=500, seed=5, names=["x", "y"])
    assert value == pytest.approx((parts[0][0].mean() + parts[1][0].mean()) / 2)
    manual = (
        bootstrap_means(parts[0][0], None, 500, derive_seed(5, "x"))
        + bootstrap_means(parts[1][0], None, 500, derive_seed(5, "y"))
    ) / 2
    assert ci.low == pytest.approx(np.quantile(manual, 0.025))
    assert ci.high == pytest.approx(np.quantile(manual, 0.975))
    # Averaging two independent subtasks narrows the CI relative to the small one alone.
    small = percentile_ci(parts[0][0], None, 500, derive_seed(5, "x"))
    assert ci.high - ci.low < small.high - small.low
    assert ci.method.endswith("mean-of-subtasks")


def test_metric_value_is_a_valid_schema_metric_with_ci_and_seed():
    values = np.r_[np.ones(30), np.zeros(10)]
    clusters = np.repeat(np.arange(20), 2)
    m = metric_value(values, clusters, B=300, seed=9)
    assert isinstance(m, MetricValue)
    assert m.value == pytest.approx(0.75) and m.n == 40
    assert m.ci[0] < 0.75 < m.ci[1]
    assert m.ci_method == "percentile-bootstrap/cluster" and m.config == {"B": 300, "seed": 9}
    assert metric_value(np.array([]), None).unavailable
    g = group_metric_value([(values, clusters), (values[:20], None)], ["a", "b"], B=300, seed=9)
    assert g.value == pytest.approx((0.75 + 1.0) / 2) and g.ci[0] <= g.value <= g.ci[1]


def test_same_seed_same_numbers_and_different_seed_different_numbers():
    values = np.random.default_rng(0).random(200)
    clusters = np.repeat(np.arange(40), 5)
    assert percentile_ci(values, clusters, 300, 42) == percentile_ci(values, clusters, 300, 42)
    assert percentile_ci(values, clusters, 300, 42) != percentile_ci(values, clusters, 300, 43)
    parts = [(values, clusters), (values[:50], None)]
    assert group_mean_ci(parts, 300, 1) == group_mean_ci(parts, 300, 1)
    assert derive_seed(1234, "chexbench_view_classification_mimic_cxr") == derive_seed(
        1234, "chexbench_view_classification_mimic_cxr"
    )
    assert derive_seed(1234, "a") != derive_seed(1234, "b")


def test_subtask_and_group_metrics_equal_the_separate_calls():
    rng = np.random.default_rng(12)
    parts = {
        "s1": ((rng.random(80) < 0.6).astype(float), np.repeat(np.arange(40), 2)),
        "s2": ((rng.random(50) < 0.8).astype(float), None),
    }
    metrics, group = subtask_and_group_metrics(parts, B=300, seed=4)
    for name, (values, clusters) in parts.items():
        alone = metric_value(values, clusters, 300, derive_seed(4, name))
        assert metrics[name].ci == alone.ci and metrics[name].value == alone.value
    assert group == group_metric_value(list(parts.values()), list(parts), B=300, seed=4)
