"""From two order-specific verdicts to one outcome per item, and rates with bootstrap CIs.

Position bias is handled the paper-agnostic, conservative way: a pair counts as a win or a
loss only when both orders agree; any disagreement is a tie and a "position flip". An item
with an unparseable verdict in either order is left out of the rates and counted, never
guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.judge.cache import Judgment
from harness.judge.runner import PlannedPair
from harness.results_schema import MetricValue
from harness.stats.bootstrap import percentile_ci

# Verdict of "Assistant 1 vs Assistant 2", seen from model A.
_AS_A_WHEN_A_FIRST = {"better": "win", "worse": "loss", "equal": "tie"}
_AS_A_WHEN_B_FIRST = {"better": "loss", "worse": "win", "equal": "tie"}


@dataclass(frozen=True)
class ItemOutcome:
    item_id: str
    cluster_id: str | None
    verdict_ab: str  # raw label with A as Assistant 1
    verdict_ba: str  # raw label with B as Assistant 1
    outcome: str  # win / tie / loss for A, or "unparseable"
    flipped: bool  # the two orders disagreed (only for parseable items)
    reversed: bool  # they disagreed in direction (win in one order, loss in the other)


def item_outcome(item_id: str, cluster_id: str | None, v_ab: str, v_ba: str) -> ItemOutcome:
    if v_ab == "unparseable" or v_ba == "unparseable":
        return ItemOutcome(item_id, cluster_id, v_ab, v_ba, "unparseable", False, False)
    first, second = _AS_A_WHEN_A_FIRST[v_ab], _AS_A_WHEN_B_FIRST[v_ba]
    if first == second:
        return ItemOutcome(item_id, cluster_id, v_ab, v_ba, first, False, False)
    return ItemOutcome(
        item_id, cluster_id, v_ab, v_ba, "tie", True, {first, second} == {"win", "loss"}
    )


def pair_outcomes(pair: PlannedPair, judgments: dict[str, Judgment]) -> list[ItemOutcome]:
    """Outcomes of every item whose two judgments exist (a failed call leaves an item out)."""
    out = []
    for item, k_ab, k_ba in zip(pair.items, pair.keys_ab, pair.keys_ba, strict=True):
        if k_ab in judgments and k_ba in judgments:
            out.append(
                item_outcome(
                    item.item_id, item.cluster_id, judgments[k_ab].verdict, judgments[k_ba].verdict
                )
            )
    return out


def _rate(indicator: np.ndarray, clusters: np.ndarray | None, B: int, seed: int) -> MetricValue:
    if len(indicator) == 0:
        return MetricValue(value=None, n=0, unavailable="no item had two parseable verdicts")
    ci = percentile_ci(indicator, clusters, B=B, seed=seed)
    return MetricValue(
        value=float(indicator.mean()),
        ci=(ci.low, ci.high),
        ci_method=ci.method,
        n=int(len(indicator)),
        config={"B": B, "seed": seed},
    )


def pair_summary(
    pair: PlannedPair, outcomes: list[ItemOutcome], task: str, B: int, seed: int
) -> dict[str, Any]:
    """The `judge.pairs[]` entry documented in docs/results-schema.md."""
    scored = [o for o in outcomes if o.outcome != "unparseable"]
    # Resample patients when every item names one; a partial mapping would mix units.
    clusters = (
        np.array([o.cluster_id for o in scored])
        if scored and all(o.cluster_id for o in scored)
        else None
    )
    result: dict[str, Any] = {
        "model_a": pair.model_a,
        "model_b": pair.model_b,
        "task": task,
        "n": len(scored),
        "n_planned": len(pair.items),
        "n_judged": len(outcomes),
    }
    for label in ("win", "tie", "loss"):
        ind = np.array([o.outcome == label for o in scored], dtype=float)
        result[label] = _rate(ind, clusters, B, seed).model_dump(mode="json")
    result["position_flip_rate"] = _rate(
        np.array([o.flipped for o in scored], dtype=float), clusters, B, seed
    ).model_dump(mode="json")
    result["position_reversal_rate"] = _rate(
        np.array([o.reversed for o in scored], dtype=float), clusters, B, seed
    ).model_dump(mode="json")
    result["unparseable"] = {
        "items": sum(1 for o in outcomes if o.outcome == "unparseable"),
        "responses": sum(
            (o.verdict_ab == "unparseable") + (o.verdict_ba == "unparseable") for o in outcomes
        ),
    }
    result["counts"] = {
        label: sum(1 for o in scored if o.outcome == label) for label in ("win", "tie", "loss")
    }
    result["excluded"] = dict(pair.dropped)
    return result
