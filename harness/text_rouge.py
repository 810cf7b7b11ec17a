"""ROUGE-L for the text tasks' in-loop lm-eval metric (the full metric set is harness.text_metrics)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, hypothesis: str) -> float:
    """F-measure, reference first (rouge-score's argument order)."""
    return float(_scorer().score(reference, hypothesis)["rougeL"].fmeasure)
