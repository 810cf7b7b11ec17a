"""From lm-eval's output to CheXbench results: per-sample rows, metrics with CIs, groups.

lm-eval computes each metric's value and its closed-form stderr; we add what it lacks: the
per-option log-probs and token counts of every item, the cluster bootstrap CI, exclusion
counts, and the per-task means the paper reports.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.results_schema import GroupResult, MetricValue, SubtaskResult
from harness.scoring import HEADLINE, RULES, predictions
from harness.stats.bootstrap import derive_seed, group_metric_value, metric_value
from harness.taxonomy import (
    PERCEPTION_GROUP,
    PERCEPTION_SUBTASKS,
    SUBTASK_BY_NAME,
    TASK_TYPES,
    group_name,
)


def perception_row(
    task: str, example: dict[str, Any], score_for: Callable[[tuple], Any]
) -> dict[str, Any]:
    """One sample row; `score_for` maps a request's args to the engine's full OptionScore."""
    doc = example["doc"]
    scores = [score_for(args) for args in example["arguments"]]
    preds = predictions(scores, doc["options"])
    row = {
        "task": task,
        "item_id": doc["item_id"],
        "doc_id": example["doc_id"],
        "dataset": doc["dataset"],
        "cluster_id": doc["cluster_id"],
        "question": doc["question"],
        "options": list(doc["options"]),
        "answer": doc["answer"],
        "image_paths": list(doc["raw_image_paths"]),
        "logprobs": [_finite(s[0]) for s in scores],
        "token_counts": [int(getattr(s, "n_tokens", 0)) for s in scores],
        "is_greedy": [bool(s[1]) for s in scores],
        "prediction": preds[HEADLINE],
        "correct": preds[HEADLINE] == doc["answer"],
    }
    for rule in ("acc", "acc_norm"):
        row[f"prediction_{rule}"] = preds[rule]
        row[f"correct_{rule}"] = preds[rule] == doc["answer"]
    generated = [getattr(s, "generated", None) for s in scores]
    if any(g is not None for g in generated):
        row["generated"] = next(g for g in generated if g is not None)
        row["unparseable"] = bool(getattr(scores[0], "unparseable", False))
    return row


def text_row(task: str, example: dict[str, Any]) -> dict[str, Any]:
    doc = example["doc"]
    prediction = example["filtered_resps"][0]
    return {
        "task": task,
        "item_id": doc["item_id"],
        "doc_id": example["doc_id"],
        "dataset": doc["dataset"],
        "cluster_id": doc["cluster_id"],
        "image_paths": list(doc["raw_image_paths"]),
        "prompt": example["arguments"][0][0],
        "prediction": prediction,
        "reference": doc["reference"],
        "metrics": {"rougeL": example.get("rougeL")},
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def perception_subtask(
    name: str,
    rows: list[dict[str, Any]],
    lm_eval_metrics: dict[str, Any],
    excluded: dict[str, int],
    B: int,
    seed: int,
) -> SubtaskResult:
    sub = SUBTASK_BY_NAME[name]
    clusters = np.array([r["cluster_id"] for r in rows])
    metrics: dict[str, MetricValue] = {}
    for rule in RULES:
        key = "correct" if rule == HEADLINE else f"correct_{rule}"
        values = np.array([float(r[key]) for r in rows])
        mv = metric_value(values, clusters, B, derive_seed(seed, name))
        reported = lm_eval_metrics.get(f"{rule},none")
        if reported is not None and abs(float(reported) - float(values.mean())) > 1e-9:
            raise AssertionError(
                f"{name}: lm-eval {rule}={reported} but samples give {values.mean()}"
            )
        stderr = lm_eval_metrics.get(f"{rule}_stderr,none")
        if isinstance(stderr, int | float) and math.isfinite(stderr):
            mv = mv.model_copy(update={"stderr": float(stderr)})
        metrics[rule] = mv
    counts = {}
    unparseable = sum(1 for r in rows if r.get("unparseable"))
    if any("unparseable" in r for r in rows):
        counts["unparseable"] = unparseable
    return SubtaskResult(
        name=name,
        task=sub.task.slug,
        dataset=sub.dataset.slug,
        kind="perception",
        n=len(rows),
        excluded=sum(excluded.values()),
        excluded_reasons=excluded,
        headline=HEADLINE,
        metrics=metrics,
        counts=counts,
    )


def perception_groups(
    rows_by_subtask: dict[str, list[dict[str, Any]]], B: int, seed: int
) -> dict[str, GroupResult]:
    """Per-task means over datasets, and the perception mean over the six tasks (paper's way)."""
    groups: dict[str, GroupResult] = {}
    parts_by_rule: dict[str, list] = defaultdict(list)
    for task in TASK_TYPES:
        members = [
            s.name
            for s in PERCEPTION_SUBTASKS
            if s.task.slug == task.slug and s.name in rows_by_subtask
        ]
        if not members:
            continue
        metrics = {}
        for rule in RULES:
            key = "correct" if rule == HEADLINE else f"correct_{rule}"
            parts = [
                (
                    np.array([float(r[key]) for r in rows_by_subtask[m]]),
                    np.array([r["cluster_id"] for r in rows_by_subtask[m]]),
                )
                for m in members
            ]
            metrics[rule] = group_metric_value(parts, members, B, seed)
            parts_by_rule[rule].append((task.slug, members, parts))
        groups[group_name(task)] = GroupResult(
            name=group_name(task), members=members, metrics=metrics
        )
    if len(groups) > 1:
        metrics = {}
        for rule, tasks in parts_by_rule.items():
            metrics[rule] = _mean_of_task_means(tasks, B, seed)
        groups[PERCEPTION_GROUP] = GroupResult(
            name=PERCEPTION_GROUP, members=list(groups), metrics=metrics
        )
    return groups


def _mean_of_task_means(tasks: list, B: int, seed: int) -> MetricValue:
    """Mean over tasks of (mean over that task's datasets), with a replicate-wise CI."""
    from harness.stats.bootstrap import bootstrap_se, ci_from_replicates, group_mean_replicates

    value = float(np.mean([np.mean([p[0].mean() for p in parts]) for _, _, parts in tasks]))
    reps = np.mean(
        [group_mean_replicates(parts, B, seed, members) for _, members, parts in tasks], axis=0
    )
    ci = ci_from_replicates(reps, "percentile-bootstrap/cluster/mean-of-task-means", B, seed)
    n = int(sum(len(p[0]) for _, _, parts in tasks for p in parts))
    return MetricValue(
        value=value,
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=n,
        config={"B": B, "seed": seed},
    )
