"""Report metrics for the two text tasks: ROUGE-L, BERTScore, CheXbert F1, RadGraph F1 and
RadCliQ-v1, each through its own package, with scorer checkpoints managed in one cache."""

from harness.text_metrics.cleaning import clean_report
from harness.text_metrics.config import BERTSCORE_PRESETS, BertScoreConfig, TextMetricsConfig
from harness.text_metrics.scoring import HEADLINE, TextScores, score_texts

__all__ = ["BERTSCORE_PRESETS", "HEADLINE", "BertScoreConfig", "TextMetricsConfig", "TextScores",
           "clean_report", "score_texts"]
