"""McNemar, Holm, the paired bootstrap, the permutation test and rank intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, permutation_test
from statsmodels.stats.multitest import multipletests

from harness.stats import holm, mcnemar_exact, paired_delta_ci, paired_permutation_test
from harness.stats.bootstrap import bootstrap_means
from harness.stats.ranking import RankPart, paired_replicate_means, rank_table


@pytest.mark.parametrize(
    "n,pa,pb,seed", [(50, 0.6, 0.6, 0), (200, 0.8, 0.7, 1), (30, 0.5, 0.9, 2), (500, 0.55, 0.5, 3)]
)
def test_mcnemar_exact_equals_scipy_binomtest_on_discordant_pairs(n, pa, pb, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) < pa, rng.random(n) < pb
    result = mcnemar_exact(a, b)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (result.only_a, result.only_b) == (only_a, only_b)
    expected = binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert result.p == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_mcnemar_without_discordant_pairs_is_one():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same).p == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_statsmodels_multipletests(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(12), rng.random(5) * 0.01, [0.04, 0.04]])  # includes ties
    rng.shuffle(p)
    expected = multipletests(p, alpha=0.05, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)


def test_holm_leaves_untestable_rows_out_of_the_family():
    p = np.array([0.01, np.nan, 0.02])
    out = holm(p)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], multipletests([0.01, 0.02], method="holm")[1])


def test_paired_ci_is_narrower_than_unpaired_when_runs_share_item_difficulty():
    rng = np.random.default_rng(4)
    difficulty = rng.random(400)
    a = (difficulty + 0.05 * rng.random(400) < 0.75).astype(float)
    b = (difficulty + 0.05 * rng.random(400) < 0.70).astype(float)
    delta, ci = paired_delta_ci(a, b, None, B=1000, seed=1)
    assert delta == pytest.approx(a.mean() - b.mean())
    unpaired = bootstrap_means(a, None, 1000, 1) - bootstrap_means(b, None, 1000, 2)
    lo, hi = np.quantile(unpaired, [0.025, 0.975])
    assert ci.high - ci.low < 0.6 * (hi - lo)
    assert ci.low <= delta <= ci.high


def test_permutation_test_agrees_with_scipy_exact_enumeration():
    rng = np.random.default_rng(5)
    a = rng.normal(0.5, 0.1, 12)
    b = a - rng.normal(0.04, 0.05, 12)
    exact = permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        alternative="two-sided",
    ).pvalue  # 2**12 flips: exact
    ours = paired_permutation_test(a, b, n_permutations=20_000, seed=3)
    assert ours == pytest.approx(exact, abs=0.01)
    assert paired_permutation_test(a, a) == 1.0


def test_cluster_permutation_flips_whole_clusters():
    """Two big patients dominating the difference: with cluster flips only 4 sign patterns
    exist, so p cannot go below 0.5; the item test (wrongly) finds a tiny p."""
    a = np.r_[np.full(20, 0.9), np.full(20, 0.8)]
    b = np.r_[np.full(20, 0.5), np.full(20, 0.5)] + np.linspace(0, 0.01, 40)
    clusters = np.repeat(["p1", "p2"], 20)
    assert paired_permutation_test(a, b, clusters, 2000, seed=1) >= 0.45
    assert paired_permutation_test(a, b, None, 2000, seed=1) < 0.01


def test_rank_intervals_separate_clear_winner_and_overlap_for_ties():
    rng = np.random.default_rng(6)
    n = 400
    scores = np.stack([rng.random(n) < p for p in (0.9, 0.6, 0.6, 0.3)]).astype(float)
    parts = [RankPart("s1", scores[:, :200]), RankPart("s2", scores[:, 200:])]
    rows = {r.run: r for r in rank_table(["best", "mid1", "mid2", "worst"], parts, B=500, seed=2)}
    assert rows["best"].rank == 1 and rows["best"].rank_ci == (1, 1)
    assert rows["worst"].rank == 4 and rows["worst"].rank_ci == (4, 4)
    assert rows["mid1"].rank_ci == (2, 3) and rows["mid2"].rank_ci == (2, 3)
    again = rank_table(["best", "mid1", "mid2", "worst"], parts, B=500, seed=2)
    assert [(r.run, r.rank_ci, r.score_ci) for r in again] == [
        (r.run, r.rank_ci, r.score_ci)
        for r in rank_table(["best", "mid1", "mid2", "worst"], parts, B=500, seed=2)
    ]


def test_paired_replicates_match_single_run_bootstrap_draws():
    rng = np.random.default_rng(8)
    values = (rng.random(90) < 0.7).astype(float)
    clusters = np.repeat(np.arange(30), 3)
    reps = paired_replicate_means(np.stack([values, 1 - values]), clusters, 200, 4)
    np.testing.assert_allclose(reps[0], bootstrap_means(values, clusters, 200, 4))
    np.testing.assert_allclose(reps[0] + reps[1], 1.0)
