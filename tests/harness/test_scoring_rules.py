"""The multiple-choice rules never guess: a score without its token count is an error."""

from __future__ import annotations

import pytest

from harness.scoring import MissingTokenCount, OptionScore, predictions


def test_mean_token_rule_and_its_siblings():
    scores = [OptionScore(-4.0, False, 4), OptionScore(-2.0, False, 1), OptionScore(-3.0, True, 6)]
    # per token: -1.0, -2.0, -0.5; summed: -4, -2, -3; per character: -4, -1, -1 (tie: first)
    assert predictions(scores, ["a", "bb", "ccc"]) == {"acc_chexbench": 2, "acc": 1, "acc_norm": 1}


def test_plain_pairs_are_refused_not_scored_as_one_token_each():
    plain = [(-4.0, False), (-2.0, False)]  # what lm-eval's own models return
    with pytest.raises(MissingTokenCount, match="token count"):
        predictions(plain, ["a", "b"])


def test_the_task_hook_names_the_item():
    from tasks.chexbench.utils import process_perception

    doc = {"options": ["a", "b"], "answer": 0, "dataset": "siim", "item_id": "binary/7"}
    with pytest.raises(MissingTokenCount, match="dataset siim, item binary/7"):
        process_perception(doc, [(-1.0, False), (-2.0, False)])


def test_unparseable_generation_counts_wrong():
    scores = [OptionScore(float("-inf"), False, 1, unparseable=True, generated="maybe")] * 2
    assert set(predictions(scores, ["a", "b"]).values()) == {-1}
