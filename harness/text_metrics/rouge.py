"""ROUGE-L F-measure exactly as `rouge-score` computes it (stemmer on, reference first)."""

from __future__ import annotations


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    return [
        scorer.score(ref, pred)["rougeL"].fmeasure
        for pred, ref in zip(predictions, references, strict=True)
    ]
