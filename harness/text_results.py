"""Results for the two text tasks: the report metrics over a run's generated texts.

`chexbench run` and `chexbench score` both end here, so a rescored file and a fresh run give
the same numbers for the same texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.results_schema import MetricValue, SubtaskResult
from harness.stats.bootstrap import derive_seed, metric_value
from harness.taxonomy import TEXT_TASK_NAMES

HEADLINE = {"findings_generation": "radgraph_partial", "findings_summarization": "rougeL"}


def text_subtask(task: str, rows: list[dict[str, Any]], excluded: dict[str, int], B: int,
                 seed: int, mode: str = "all") -> SubtaskResult:
    slug = next(s for s, name in TEXT_TASK_NAMES.items() if name == task)
    datasets = sorted({r["dataset"] for r in rows})
    clusters = np.array([r["cluster_id"] for r in rows])
    metrics: dict[str, MetricValue] = {}
    if mode == "all":
        from harness.text_metrics import TextMetricsConfig, score_texts

        scored = score_texts([r["prediction"] for r in rows], [r["reference"] for r in rows],
                             TextMetricsConfig(), clusters=list(clusters), bootstrap_B=B,
                             seed=derive_seed(seed, task))
        metrics.update(scored.metrics)
        for row, per in zip(rows, scored.per_sample, strict=True):
            row["metrics"].update(per)
        for reason, k in scored.excluded.items():
            excluded[reason] = excluded.get(reason, 0) + k
    else:
        values = np.array([r["metrics"]["rougeL"] for r in rows], dtype=float)
        metrics["rougeL"] = metric_value(values, clusters, B, derive_seed(seed, task),
                                         config={"scorer": "rouge-score", "stemmer": True})
    headline = HEADLINE[slug] if HEADLINE[slug] in metrics else "rougeL"
    return SubtaskResult(name=task, task=slug, dataset=datasets[0] if len(datasets) == 1 else
                         "mixed", kind="text", n=len(rows), excluded=sum(excluded.values()),
                         excluded_reasons=excluded, headline=headline, metrics=metrics)
