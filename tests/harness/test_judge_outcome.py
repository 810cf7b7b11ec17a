"""Two order-specific verdicts become one outcome; rates carry seeded bootstrap CIs."""

from __future__ import annotations

import pytest

from harness.judge.cache import Judgment
from harness.judge.outcome import item_outcome, pair_outcomes, pair_summary
from harness.judge.pairs import PairItem
from harness.judge.runner import PlannedPair
from harness.openai_compat.cache import PaidCall


@pytest.mark.parametrize(
    "v_ab,v_ba,outcome,flipped,reversed_",
    [
        ("better", "worse", "win", False, False),  # A first: A better; B first: B worse
        ("worse", "better", "loss", False, False),
        ("equal", "equal", "tie", False, False),
        ("better", "better", "tie", True, True),  # always prefers Assistant 1: position bias
        ("worse", "worse", "tie", True, True),
        ("better", "equal", "tie", True, False),
        ("equal", "worse", "tie", True, False),
        ("unparseable", "worse", "unparseable", False, False),
        ("better", "unparseable", "unparseable", False, False),
    ],
)
def test_item_outcome(v_ab, v_ba, outcome, flipped, reversed_):
    o = item_outcome("i", None, v_ab, v_ba)
    assert (o.outcome, o.flipped, o.reversed) == (outcome, flipped, reversed_)


def _judgment(key: str, verdict: str) -> Judgment:
    call = PaidCall(1, key, "http://h/v1", "m", 10, 2, True, 1, 0.1, "now", "inv", None)
    return Judgment(key, "resp", verdict, call)


def test_pair_summary_rates_counts_and_cis():
    verdicts = (
        [("better", "worse")] * 6
        + [("worse", "better")] * 2
        + [("equal", "equal")]
        + [("better", "better")]
        + [("unparseable", "better")] * 2
    )
    items = [PairItem(f"i{k}", "ref", "a", "b", f"p{k % 4}") for k in range(len(verdicts))]
    pair = PlannedPair(
        "A",
        "B",
        items,
        [f"ab{k}" for k in range(len(items))],
        [f"ba{k}" for k in range(len(items))],
    )
    judgments = {}
    for k, (ab, ba) in enumerate(verdicts):
        judgments[f"ab{k}"] = _judgment(f"ab{k}", ab)
        judgments[f"ba{k}"] = _judgment(f"ba{k}", ba)
    del judgments["ba11"]  # a judgment that never came back leaves its item out
    outcomes = pair_outcomes(pair, judgments)
    s = pair_summary(pair, outcomes, "findings_generation", B=500, seed=7)
    assert s["n"] == 10 and s["n_planned"] == 12 and s["n_judged"] == 11
    assert s["counts"] == {"win": 6, "tie": 2, "loss": 2}
    assert s["win"]["value"] == pytest.approx(0.6)
    assert s["position_flip_rate"]["value"] == pytest.approx(0.1)
    assert s["unparseable"] == {"items": 1, "responses": 1}
    for label in ("win", "tie", "loss"):
        lo, hi = s[label]["ci"]
        assert lo <= s[label]["value"] <= hi and lo < hi
        assert s[label]["ci_method"] == "percentile-bootstrap/cluster"
        assert s[label]["config"] == {"B": 500, "seed": 7}
    assert s["win"]["value"] + s["tie"]["value"] + s["loss"]["value"] == pytest.approx(1.0)
    # Same seed, same interval; another seed, (almost surely) another one.
    again = pair_summary(pair, outcomes, "findings_generation", B=500, seed=7)
    assert again["win"]["ci"] == s["win"]["ci"]


def test_no_parseable_item_gives_unavailable_not_zero():
    items = [PairItem("i0", "ref", "a", "b", None)]
    pair = PlannedPair("A", "B", items, ["ab"], ["ba"])
    judgments = {"ab": _judgment("ab", "unparseable"), "ba": _judgment("ba", "better")}
    s = pair_summary(pair, pair_outcomes(pair, judgments), "findings_generation", 100, 1)
    assert s["n"] == 0
    assert s["win"]["value"] is None and "parseable" in s["win"]["unavailable"]


def test_pipeline_bootstrap_defaults_match_the_shared_ones():
    from harness.defaults import BOOTSTRAP_SAMPLES, SEED
    from harness.judge.pipeline import JudgeConfig

    cfg = JudgeConfig(runs=[], task="findings_generation")
    assert (cfg.bootstrap_b, cfg.bootstrap_seed) == (BOOTSTRAP_SAMPLES, SEED)
