"""`score_texts`: every report metric for one list of predictions against references.

A missing scorer makes its metrics unavailable (with the file and the command that fixes
it) while the others still run; a present-but-wrong scorer stops the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.defaults import BOOTSTRAP_SAMPLES, SEED
from harness.results_schema import MetricValue
from harness.taxonomy import TEXT_HEADLINES
from harness.text_metrics import aggregate
from harness.text_metrics.cache import ScorerUnavailable, cache_root
from harness.text_metrics.cleaning import clean_report
from harness.text_metrics.config import TextMetricsConfig

HEADLINE = TEXT_HEADLINES["findings_generation"]  # RG_ER, the report-generation headline
FAMILY_METRICS: dict[str, tuple[str, ...]] = {
    "rougeL": ("rougeL",),
    "bertscore": ("bertscore_f1",),
    "chexbert": (
        "chexbert_f1_micro14",
        "chexbert_f1_macro14",
        "chexbert_f1_micro5",
        "chexbert_f1_macro5",
        "chexbert_accuracy",
    ),
    "radgraph": ("radgraph_simple", "radgraph_partial", "radgraph_complete"),
    "radcliq": ("radcliq_v1",),
}
PER_SAMPLE_KEYS = (
    "rougeL",
    "bertscore_f1",
    "chexbert_accuracy",
    "radgraph_simple",
    "radgraph_partial",
    "radgraph_complete",
    "radcliq_v1",
    "radcliq_radgraph",
    "radcliq_bertscore_f1",
    "semb",
    "bleu2",
)


@dataclass
class TextScores:
    metrics: dict[str, MetricValue]
    per_sample: list[dict[str, float | None]]  # aligned with the inputs; None = not scored
    excluded: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


# Loaded scorers, kept for the process: `chexbench run` scores two text tasks and the
# models take seconds to load. Missing ones are not remembered (they may be fetched).
_LOADED: dict[tuple[str, str], Any] = {}


def clear_loaded_scorers() -> None:
    """Free the scorer models held by this process."""
    _LOADED.clear()


class _Scorers:
    """Loads each scorer once, on first use, remembering why one could not be loaded."""

    def __init__(self, cfg: TextMetricsConfig):
        self.cfg, self.root = cfg, cache_root(cfg.cache_dir)
        self._made: dict[str, Any] = {}

    def get(self, name: str):
        if name not in self._made:
            key = (name, self.cfg.model_dump_json(exclude={"metrics"}) + str(self.root))
            try:
                if key not in _LOADED:
                    _LOADED[key] = self._build(name)
                self._made[name] = _LOADED[key]
            except ScorerUnavailable as exc:
                self._made[name] = exc
        made = self._made[name]
        if isinstance(made, ScorerUnavailable):
            raise made
        return made

    def _build(self, name: str):
        cfg, root = self.cfg, self.root
        if name == "chexbert":
            from harness.text_metrics.chexbert import CheXbertScorer

            return CheXbertScorer(root, cfg.device)
        if name == "radgraph":
            from harness.text_metrics.radgraph_metric import RadGraphScorer

            return RadGraphScorer(root, cfg.radgraph_model_type, cfg.device)
        from harness.text_metrics.bertscore import BertScorer

        if name == "bertscore":
            return BertScorer(cfg.bertscore, root, cfg.device, cfg.batch_size)
        if name == "radcliq_bertscore":
            return BertScorer(cfg.radcliq_bertscore, root, cfg.device, cfg.batch_size, "radcliq")
        raise KeyError(name)


def score_texts(
    predictions: list[str],
    references: list[str],
    cfg: TextMetricsConfig,
    clusters: list[str] | None = None,
    bootstrap_B: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> TextScores:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if clusters is not None and len(clusters) != len(predictions):
        raise ValueError(f"{len(clusters)} cluster ids for {len(predictions)} predictions")
    preds = [clean_report(p) for p in predictions]
    refs = [clean_report(r) for r in references]
    keep = [i for i, r in enumerate(refs) if r]
    excluded = {"empty_reference": len(predictions) - len(keep)}
    kp, kr = [preds[i] for i in keep], [refs[i] for i in keep]
    kc = np.asarray([clusters[i] for i in keep]) if clusters is not None else None
    B, root = bootstrap_B, cache_root(cfg.cache_dir)
    scorers = _Scorers(cfg)
    samples: dict[str, list[float]] = {}
    metrics: dict[str, MetricValue] = {}

    def mean(name: str, values: list[float], config: dict[str, Any]) -> None:
        samples[name] = values
        metrics[name] = aggregate.mean_metric(values, kc, B, seed, config)

    def radgraph_out():
        if "radgraph_out" not in samples:
            samples["radgraph_out"] = scorers.get("radgraph").score(kp, kr)
        return samples["radgraph_out"]

    def chexbert_out():
        if "chexbert_out" not in samples:
            samples["chexbert_out"] = scorers.get("chexbert").score(kp, kr)
        return samples["chexbert_out"]

    families = [f for f in cfg.metrics if keep]
    for family in families:
        try:
            if family == "rougeL":
                from harness.text_metrics.rouge import rouge_l

                mean(
                    "rougeL",
                    rouge_l(kp, kr),
                    {"package": "rouge-score", "use_stemmer": True, "score": "fmeasure"},
                )
            elif family == "bertscore":
                scorer = scorers.get("bertscore")
                from harness.text_metrics.bertscore import describe

                mean(
                    "bertscore_f1",
                    scorer.f1(kp, kr),
                    {**describe(cfg.bertscore), "baseline_file": _name(scorer.baseline_file)},
                )
            elif family == "chexbert":
                _chexbert_metrics(
                    chexbert_out(), scorers.get("chexbert").checkpoint, kc, B, seed, mean, metrics
                )
            elif family == "radgraph":
                out = radgraph_out()
                for level in ("simple", "partial", "complete"):
                    mean(
                        f"radgraph_{level}",
                        getattr(out, level),
                        {
                            "package": "radgraph",
                            "model_type": cfg.radgraph_model_type,
                            "reward_level": level,
                            "headline": level == "partial",
                            "case": "inputs lowercased by the clean-up",
                        },
                    )
            elif family == "radcliq":
                _radcliq(kp, kr, scorers, radgraph_out, chexbert_out, cfg, mean, samples)
        except ScorerUnavailable as exc:
            prefix = "RadCliQ-v1 input unavailable: " if family == "radcliq" else ""
            for name in FAMILY_METRICS[family]:
                metrics[name] = aggregate.unavailable(prefix + str(exc))
    if not keep:
        for family in cfg.metrics:
            for name in FAMILY_METRICS[family]:
                metrics[name] = aggregate.unavailable(
                    "every reference is empty after clean-up; -; check the references"
                )

    per_sample: list[dict[str, float | None]] = [
        {k: None for k in PER_SAMPLE_KEYS if k in samples} for _ in predictions
    ]
    for key in PER_SAMPLE_KEYS:
        if key in samples:
            for pos, i in enumerate(keep):
                per_sample[i][key] = float(samples[key][pos])
    config = {
        "cleaning": "official: drop [...] and **, collapse whitespace, lowercase",
        "cache_dir": str(root),
        "bootstrap": {"B": B, "seed": seed, "unit": "cluster" if kc is not None else "item"},
        **cfg.model_dump(mode="json", exclude={"cache_dir"}),
    }
    return TextScores(metrics=metrics, per_sample=per_sample, excluded=excluded, config=config)


def _name(path: Path | None) -> str | None:
    return path.name if path else None


def _chexbert_metrics(out, checkpoint: Path, kc, B: int, seed: int, mean, metrics) -> None:
    base = {
        "package": "f1chexbert",
        "checkpoint": checkpoint.name,
        "positive": "present or uncertain (f1chexbert 'rrg' mode)",
    }
    idx5 = out.index5
    for labels, report, hyp, ref in (
        ("14", out.report14, out.hyp_labels, out.ref_labels),
        ("5", out.report5, out.hyp_labels[:, idx5], out.ref_labels[:, idx5]),
    ):
        for average in ("micro", "macro"):
            value = report[f"{average} avg"]["f1-score"]
            metrics[f"chexbert_f1_{average}{labels}"] = aggregate.f1_metric(
                value,
                hyp,
                ref,
                average,
                kc,
                B,
                seed,
                {**base, "labels": int(labels), "average": average},
            )
    mean(
        "chexbert_accuracy",
        out.per_sample_exact5,
        {**base, "labels": 5, "definition": "exact match of the 5 labels (f1chexbert accuracy)"},
    )


def _radcliq(
    kp, kr, scorers: _Scorers, radgraph_out, chexbert_out, cfg: TextMetricsConfig, mean, samples
) -> None:
    from harness.text_metrics.bertscore import describe
    from harness.text_metrics.radcliq import bleu2, cosine, radcliq_v1

    rg = radgraph_out().entity_relation_mean
    bs = scorers.get("radcliq_bertscore").f1(kp, kr)
    chex = scorers.get("chexbert")
    semb = cosine(chex.embeddings(kr, cfg.batch_size), chex.embeddings(kp, cfg.batch_size))
    bl = bleu2(kp, kr)
    samples.update(radcliq_radgraph=rg, radcliq_bertscore_f1=bs, semb=semb, bleu2=bl)
    mean(
        "radcliq_v1",
        radcliq_v1(rg, bs, semb, bl),
        {
            "version": "v1",
            "lower_is_better": True,
            "inputs": {
                "radgraph": f"entity/relation F1 mean ({cfg.radgraph_model_type})",
                "bertscore": describe(cfg.radcliq_bertscore),
                "semb": "cosine of CheXbert [CLS] embeddings",
                "bleu2": "nltk, no smoothing",
            },
        },
    )
