"""Report metrics without model checkpoints: clean-up, ROUGE-L, F1 arithmetic and its CIs,
and the "missing scorer is unavailable, never zero" rule."""

from __future__ import annotations

import numpy as np
import pytest
from rouge_score.rouge_scorer import RougeScorer
from sklearn.metrics import classification_report

from harness.errors import UserError
from harness.results_schema import MetricValue
from harness.text_metrics import BERTSCORE_PRESETS, TextMetricsConfig, clean_report, score_texts
from harness.text_metrics.aggregate import f1_metric, label_f1, label_f1_replicates
from harness.text_metrics.cache import scorer_files


def test_clean_report_official_rules():
    assert (
        clean_report("  **Findings:** [...] Small  LEFT\n effusion. [redacted] ")
        == "findings: small left effusion."
    )
    assert clean_report(None) == ""
    assert clean_report("[...] ** \n") == ""
    # Removed, not replaced by a space, as the official re.sub("\[.*?\]", "", x) does; its "."
    # stops at a newline, so a bracket spanning lines stays.
    assert clean_report("left[...]sided e**ffusion") == "leftsided effusion"
    assert clean_report("[not\nclosed] ok") == "[not closed] ok"


def test_rouge_l_equals_rouge_score_reference_first():
    preds = ["The heart size is normal.", "no pleural effusion", "lungs are clear bilaterally"]
    refs = ["Heart size normal, no effusion.", "small left pleural effusion", "clear lungs"]
    out = score_texts(preds, refs, TextMetricsConfig(metrics=["rougeL"]), bootstrap_B=50)
    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    expected = [
        scorer.score(clean_report(r), clean_report(p))["rougeL"].fmeasure
        for p, r in zip(preds, refs, strict=True)
    ]
    assert [s["rougeL"] for s in out.per_sample] == pytest.approx(expected)
    assert out.metrics["rougeL"].value == pytest.approx(np.mean(expected))
    # Reference-first matters: precision and recall swap otherwise.
    swapped = scorer.score(clean_report(preds[0]), clean_report(refs[0]))["rougeL"]
    direct = scorer.score(clean_report(refs[0]), clean_report(preds[0]))["rougeL"]
    assert swapped.precision == pytest.approx(direct.recall)


def test_empty_reference_dropped_and_empty_hypothesis_scores_minimum():
    out = score_texts(
        ["no effusion", "", "x"],
        ["no effusion", "lungs clear", "[...] **"],
        TextMetricsConfig(metrics=["rougeL"]),
        bootstrap_B=50,
    )
    assert out.excluded == {"empty_reference": 1}
    assert out.per_sample[0]["rougeL"] == 1.0
    assert out.per_sample[1]["rougeL"] == 0.0
    assert out.per_sample[2]["rougeL"] is None
    assert out.metrics["rougeL"].n == 2 and out.metrics["rougeL"].value == 0.5


def test_identical_texts_give_rouge_maximum_with_cluster_ci():
    texts = ["no acute process", "stable cardiomegaly", "small effusion", "clear lungs"]
    out = score_texts(
        texts,
        texts,
        TextMetricsConfig(metrics=["rougeL"]),
        clusters=["p1", "p1", "p2", "p3"],
        bootstrap_B=100,
        seed=7,
    )
    m = out.metrics["rougeL"]
    assert m.value == 1.0 and m.ci == (1.0, 1.0) and m.ci_method.endswith("cluster")


def test_missing_checkpoints_are_unavailable_and_rouge_still_runs(tmp_path):
    cfg = TextMetricsConfig(cache_dir=tmp_path)
    out = score_texts(["small effusion"], ["small left effusion"], cfg, bootstrap_B=20)
    assert out.metrics["rougeL"].value > 0
    for name in (
        "bertscore_f1",
        "chexbert_f1_micro14",
        "chexbert_accuracy",
        "radgraph_partial",
        "radcliq_v1",
    ):
        m = out.metrics[name]
        assert m.value is None, name
        reason, path, command = m.unavailable.split("; ")
        assert "missing" in reason and str(tmp_path) in path
        assert command.startswith("chexbench scorers fetch")
    assert "chexbert.pth" in out.metrics["chexbert_f1_micro14"].unavailable
    MetricValue.model_validate(out.metrics["radgraph_partial"].model_dump())


def test_scorer_status_lists_every_file(tmp_path):
    files = scorer_files(TextMetricsConfig(cache_dir=tmp_path))
    assert {f.scorer for f in files} == {"chexbert", "radgraph", "bertscore", "radcliq"}
    assert not any(f.present for f in files)
    (tmp_path / "chexbert").mkdir()
    (tmp_path / "chexbert" / "chexbert.pth").write_bytes(b"x" * 10)
    f = scorer_files(TextMetricsConfig(cache_dir=tmp_path))[0]
    assert f.present and f.size == 10


def test_bertscore_presets():
    assert BERTSCORE_PRESETS["radeval"].model == "distilbert-base-uncased"
    assert BERTSCORE_PRESETS["radeval"].num_layers == 5
    assert BERTSCORE_PRESETS["bertscore-default"].model == "roberta-large"
    assert BERTSCORE_PRESETS["bertscore-default"].num_layers == 17
    assert TextMetricsConfig.with_bertscore_preset("bertscore-default").bertscore.num_layers == 17
    with pytest.raises(UserError, match="unknown BERTScore preset"):
        TextMetricsConfig.with_bertscore_preset("nope")


def _random_labels(rng, n, k):
    return rng.integers(0, 2, size=(n, k)).astype(bool), rng.integers(0, 2, size=(n, k)).astype(
        bool
    )


def test_label_f1_matches_sklearn_classification_report():
    rng = np.random.default_rng(0)
    hyp, ref = _random_labels(rng, 40, 14)
    ref[:, 3] = hyp[:, 3] = False  # a label nobody has: sklearn counts it as F1 = 0 in macro
    report = classification_report(
        ref.astype(int), hyp.astype(int), output_dict=True, zero_division=0
    )
    assert label_f1(hyp, ref, "micro") == pytest.approx(report["micro avg"]["f1-score"])
    assert label_f1(hyp, ref, "macro") == pytest.approx(report["macro avg"]["f1-score"])


def test_corpus_f1_replicates_are_the_f1_of_each_resample():
    rng = np.random.default_rng(1)
    hyp, ref = _random_labels(rng, 30, 5)
    B, seed = 50, 3
    reps = label_f1_replicates(hyp, ref, "micro", None, B, seed)
    draws = np.random.default_rng(seed).integers(0, 30, size=(B, 30))
    direct = [label_f1(hyp[d], ref[d], "micro") for d in draws]
    assert reps == pytest.approx(direct)
    m = f1_metric(label_f1(hyp, ref, "micro"), hyp, ref, "micro", None, B, seed, {})
    assert m.ci[0] <= m.value <= m.ci[1] and m.ci_method.endswith("corpus-f1")
