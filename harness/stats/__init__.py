"""Uncertainty for every reported number: bootstrap CIs, paired tests, multiplicity control."""

from harness.stats.bootstrap import (
    BootstrapCI,
    bootstrap_means,
    ci_from_replicates,
    derive_seed,
    group_mean_ci,
    group_metric_value,
    metric_value,
    percentile_ci,
    subtask_and_group_metrics,
)
from harness.stats.multiplicity import holm
from harness.stats.paired import mcnemar_exact, paired_delta_ci, paired_permutation_test

__all__ = [
    "BootstrapCI",
    "bootstrap_means",
    "ci_from_replicates",
    "derive_seed",
    "group_mean_ci",
    "group_metric_value",
    "metric_value",
    "percentile_ci",
    "subtask_and_group_metrics",
    "holm",
    "mcnemar_exact",
    "paired_delta_ci",
    "paired_permutation_test",
]
