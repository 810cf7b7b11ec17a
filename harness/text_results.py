"""Results for the two text tasks: the report metrics over a run's generated texts.

`chexbench run` and `chexbench score` both end here, so a rescored file and a fresh run give
the same numbers for the same texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.results_schema import MetricValue, SubtaskResult
from harness.stats.bootstrap import derive_seed, metric_value
from harness.taxonomy import TEXT_HEADLINES, TEXT_TASK_NAMES


def text_headline(task_slug: str, metrics: dict[str, Any]) -> str:
    """The task's headline metric, or ROUGE-L when the model-based scorer was unavailable."""
    headline = TEXT_HEADLINES.get(task_slug, "rougeL")
    return headline if metrics.get(headline) is not None else "rougeL"


def text_subtask(
    task: str,
    rows: list[dict[str, Any]],
    excluded: dict[str, int],
    B: int,
    seed: int,
    mode: str = "all",
    cfg: Any = None,
    name: str | None = None,
) -> SubtaskResult:
    """Metrics of one text task's rows (`task`: the lm-eval task name; `name`: the results key,
    the task itself for a run, task + dataset for rescored files). Every row's `metrics` gets
    its per-sample values; rows whose cleaned reference is empty are counted, not scored."""
    slug = next(s for s, n in TEXT_TASK_NAMES.items() if n == task)
    datasets = sorted({r["dataset"] for r in rows})
    clusters = np.array([r["cluster_id"] for r in rows])
    excluded = dict(excluded)
    metrics: dict[str, MetricValue] = {}
    if mode == "all":
        from harness.text_metrics import TextMetricsConfig, score_texts

        scored = score_texts(
            [r["prediction"] for r in rows],
            [r["reference"] or "" for r in rows],
            cfg or TextMetricsConfig(),
            clusters=list(clusters),
            bootstrap_B=B,
            seed=derive_seed(seed, task),
        )
        metrics.update(scored.metrics)
        for row, per in zip(rows, scored.per_sample, strict=True):
            row["metrics"].update({k: v for k, v in per.items() if v is not None})
            if not per or all(v is None for v in per.values()):
                row["excluded"] = "empty_reference"
        for reason, k in scored.excluded.items():
            if k:
                excluded[reason] = excluded.get(reason, 0) + k
        n = len(rows) - sum(scored.excluded.values())
    else:
        values = np.array([r["metrics"]["rougeL"] for r in rows], dtype=float)
        metrics["rougeL"] = metric_value(
            values,
            clusters,
            B,
            derive_seed(seed, task),
            config={"scorer": "rouge-score", "stemmer": True},
        )
        n = len(rows)
    return SubtaskResult(
        name=name or task,
        task=slug,
        dataset=datasets[0] if len(datasets) == 1 else "mixed",
        kind="text",
        n=n,
        excluded=sum(excluded.values()),
        excluded_reasons=excluded,
        headline=text_headline(slug, metrics),
        metrics=metrics,
    )
