"""What to compute and with which scorer models; recorded next to every score it produces."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.defaults import BERTSCORE_PRESET, BERTSCORE_PRESET_NAMES, TEXT_METRIC_FAMILIES
from harness.errors import UserError

MetricFamily = Literal["rougeL", "bertscore", "chexbert", "radgraph", "radcliq"]
ALL_FAMILIES: tuple[str, ...] = TEXT_METRIC_FAMILIES


class BertScoreConfig(BaseModel):
    """One BERTScore configuration; scores from different configurations are not comparable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "distilbert-base-uncased"  # hub id (looked up in the scorer cache) or a folder
    num_layers: int = 5
    rescale_with_baseline: bool = True
    # Needed when `model` is a folder that is not a known hub id: bert-score silently skips
    # rescaling for local paths without it, so we refuse to run instead.
    baseline_path: str | None = None
    idf: bool = False
    lang: str = "en"


BERTSCORE_PRESETS: dict[str, BertScoreConfig] = {
    # RadEval / vilmedic: what report-generation papers usually mean by BERTScore.
    "radeval": BertScoreConfig(model="distilbert-base-uncased", num_layers=5),
    # bert-score's own English default (lang="en").
    "bertscore-default": BertScoreConfig(model="roberta-large", num_layers=17),
    # The input RadCliQ-v1 was fitted on (CXR-Report-Metric): distilroberta-base, rescaled.
    "radcliq": BertScoreConfig(model="distilroberta-base", num_layers=5),
}
if tuple(BERTSCORE_PRESETS) != BERTSCORE_PRESET_NAMES:  # the CLI lists presets without pydantic
    raise ImportError("harness.defaults.BERTSCORE_PRESET_NAMES is out of date")


class TextMetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricFamily] = Field(default_factory=lambda: list(ALL_FAMILIES))
    bertscore: BertScoreConfig = Field(default_factory=lambda: BERTSCORE_PRESETS[BERTSCORE_PRESET])
    radcliq_bertscore: BertScoreConfig = Field(default_factory=lambda: BERTSCORE_PRESETS["radcliq"])
    radgraph_model_type: Literal["radgraph", "radgraph-xl", "modern-radgraph-xl"] = "radgraph"
    cache_dir: Path | None = None  # None: $CHEXBENCH_CACHE/scorers or ~/.cache/chexbench/scorers
    device: str = "cpu"
    batch_size: int = 32

    @classmethod
    def with_bertscore_preset(cls, preset: str, **kwargs: object) -> TextMetricsConfig:
        if preset not in BERTSCORE_PRESETS:
            raise UserError(
                f"unknown BERTScore preset {preset!r}; known: {sorted(BERTSCORE_PRESETS)}"
            )
        return cls(bertscore=BERTSCORE_PRESETS[preset], **kwargs)
