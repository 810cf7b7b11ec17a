"""Each model-based metric through its package's own code on tiny models (see
test_text_metrics_tiny.py): bert-score, f1chexbert, radgraph, and RadCliQ-v1 on top."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.tiny_scorers import shared_scorer_cache

from harness.text_metrics import TextMetricsConfig, score_texts
from harness.text_metrics.bertscore import BertScorer, packaged_baseline
from harness.text_metrics.cache import ScorerError, ScorerUnavailable
from harness.text_metrics.chexbert import CheXbertScorer
from harness.text_metrics.config import BertScoreConfig
from harness.text_metrics.radcliq import COEF, INTERCEPT, MEAN, SCALE

REFS = [
    "Small left pleural effusion.",
    "Cardiomegaly.",
    "The lungs are clear.",
    "Mild cardiomegaly and small effusion.",
]
NEGATED = [
    "No effusion.",
    "Cardiomegaly.",
    "The lungs are clear.",
    "Mild cardiomegaly and small effusion.",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return shared_scorer_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def identical(root):
    return score_texts(REFS, REFS, TextMetricsConfig(cache_dir=root), bootstrap_B=100)


@pytest.fixture(scope="module")
def negated(root):
    return score_texts(NEGATED, REFS, TextMetricsConfig(cache_dir=root), bootstrap_B=100)


def test_identical_texts_give_each_metric_its_maximum(identical):
    m = identical.metrics
    for name in (
        "rougeL",
        "bertscore_f1",
        "radgraph_simple",
        "radgraph_partial",
        "radgraph_complete",
        "chexbert_f1_micro14",
        "chexbert_f1_micro5",
        "chexbert_accuracy",
    ):
        assert m[name].value == pytest.approx(1.0), name
    # Macro F1 averages over all 14 (5) labels; labels absent from both sides count as 0
    # (sklearn), so its maximum here is (#labels present) / 14 and / 5.
    assert m["chexbert_f1_macro14"].value == pytest.approx(2 / 14)
    assert m["chexbert_f1_macro5"].value == pytest.approx(2 / 5)
    assert all(v.unavailable is None for v in m.values())


def test_negated_finding_lowers_chexbert_f1(identical, negated):
    for name in (
        "chexbert_f1_micro14",
        "chexbert_f1_micro5",
        "chexbert_f1_macro5",
        "chexbert_accuracy",
    ):
        assert negated.metrics[name].value < identical.metrics[name].value, name
    # "no effusion" drops the only effusion positive of report 0: 3 TP, 1 FN -> 6/7.
    assert negated.metrics["chexbert_f1_micro14"].value == pytest.approx(6 / 7)
    assert negated.per_sample[0]["chexbert_accuracy"] == 0.0
    assert negated.per_sample[1]["chexbert_accuracy"] == 1.0


def test_swapped_findings_score_zero_chexbert_f1(root):
    out = score_texts(
        ["cardiomegaly", "small effusion"],
        ["small effusion", "cardiomegaly"],
        TextMetricsConfig(cache_dir=root, metrics=["chexbert"]),
        bootstrap_B=50,
    )
    assert out.metrics["chexbert_f1_micro14"].value == 0.0


def test_bertscore_is_rescaled_with_the_packaged_baseline_for_a_local_model(root):
    cands, refs = NEGATED, REFS
    raw = BertScorer(BertScoreConfig(rescale_with_baseline=False), root, "cpu", 8).f1(cands, refs)
    scaled = BertScorer(BertScoreConfig(), root, "cpu", 8)
    base_f = pd.read_csv(packaged_baseline("distilbert-base-uncased", "en")).iloc[5]["F"]
    assert scaled.baseline_file.name == "distilbert-base-uncased.tsv"
    expected = [(r - base_f) / (1 - base_f) for r in raw]
    assert scaled.f1(cands, refs) == pytest.approx(expected, abs=1e-5)
    assert scaled.f1(["", "x"], ["a", ""])[0] == pytest.approx((0 - base_f) / (1 - base_f))


def test_bertscore_local_folder_without_baseline_is_refused_not_silently_unrescaled(root, tmp_path):
    folder = tmp_path / "my-encoder"
    shutil.copytree(root / "hf" / "distilbert-base-uncased", folder)
    with pytest.raises(ScorerUnavailable, match="no BERTScore rescaling baseline"):
        BertScorer(BertScoreConfig(model=str(folder)), root, "cpu", 8)
    ok = BertScorer(BertScoreConfig(model=str(folder), rescale_with_baseline=False), root, "cpu", 8)
    assert ok.f1(["small effusion"], ["small effusion"])[0] == pytest.approx(1.0, abs=1e-5)


def test_bertscore_config_recorded_next_to_score(identical):
    cfg = identical.metrics["bertscore_f1"].config
    assert cfg["model"] == "distilbert-base-uncased" and cfg["num_layers"] == 5
    assert cfg["rescale_with_baseline"] is True
    assert cfg["baseline_file"] == "distilbert-base-uncased.tsv"


def test_chexbert_checkpoint_key_mismatch_fails_loudly(root, tmp_path):
    bad = tmp_path / "cache"
    shutil.copytree(root / "hf" / "bert-base-uncased", bad / "hf" / "bert-base-uncased")
    state = torch.load(root / "chexbert" / "chexbert.pth", weights_only=True)
    del state["model_state_dict"]["module.linear_heads.13.bias"]
    state["model_state_dict"]["module.extra.weight"] = torch.zeros(1)
    (bad / "chexbert").mkdir()
    torch.save(state, bad / "chexbert" / "chexbert.pth")
    with pytest.raises(ScorerError, match=r"missing 1: linear_heads.13.bias.*unexpected 1"):
        CheXbertScorer(bad, "cpu")


def test_radgraph_levels_and_case(root, negated):
    out = negated.per_sample
    assert out[1]["radgraph_partial"] == 1.0  # identical report
    assert out[0]["radgraph_simple"] < 1.0
    cfg = negated.metrics["radgraph_partial"].config
    assert cfg["reward_level"] == "partial" and cfg["headline"] and cfg["model_type"] == "radgraph"
    # Cleaning lowercases, so casing cannot change RadGraph (0.1.18 is case-sensitive).
    upper = score_texts(
        [r.upper() for r in REFS],
        REFS,
        TextMetricsConfig(cache_dir=root, metrics=["radgraph"]),
        bootstrap_B=20,
    )
    assert upper.metrics["radgraph_simple"].value == pytest.approx(1.0)


def test_radcliq_v1_is_the_published_linear_model_of_its_inputs(identical, negated):
    for out in (identical, negated):
        for row in out.per_sample:
            x = np.array(
                [row["radcliq_radgraph"], row["radcliq_bertscore_f1"], row["semb"], row["bleu2"]]
            )
            assert row["radcliq_v1"] == pytest.approx(
                float(((x - MEAN) / SCALE) @ COEF + INTERCEPT)
            )
    # Lower is better: the negated report scores worse than the identical one.
    assert negated.per_sample[0]["radcliq_v1"] > identical.per_sample[0]["radcliq_v1"]
    assert identical.metrics["radcliq_v1"].config["lower_is_better"] is True


def test_one_missing_scorer_leaves_the_others(root, tmp_path):
    partial = tmp_path / "cache"
    shutil.copytree(root / "hf", partial / "hf")
    out = score_texts(
        REFS[:2],
        REFS[:2],
        TextMetricsConfig(cache_dir=partial, metrics=["rougeL", "bertscore", "chexbert"]),
        bootstrap_B=20,
    )
    assert out.metrics["bertscore_f1"].value == pytest.approx(1.0)
    assert out.metrics["chexbert_f1_micro14"].value is None
    assert "chexbert.pth" in out.metrics["chexbert_f1_micro14"].unavailable
