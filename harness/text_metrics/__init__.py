"""Report metrics for the two text tasks: ROUGE-L, BERTScore, CheXbert F1, RadGraph F1 and
RadCliQ-v1, each through its own package, with scorer checkpoints managed in one cache.

Names are imported on first use: the clean-up and ROUGE-L (core, used by the task hooks) must
not pull in the model-based scorers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "clean_report": "cleaning",
    "BERTSCORE_PRESETS": "config",
    "BertScoreConfig": "config",
    "TextMetricsConfig": "config",
    "HEADLINE": "scoring",
    "TextScores": "scoring",
    "score_texts": "scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.text_metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.text_metrics.{_EXPORTS[name]}"), name)
