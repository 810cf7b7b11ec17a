"""Subgroup F1 under the balanced bootstrap, and the per-attribute gap with its CI.

The gap is signed on purpose: it is F1(best) - F1(worst), where best and worst are the
subgroups with the highest and lowest mean F1, computed on every bootstrap sample. An unsigned
max - min is never below zero, so its CI could never cover zero even with no disparity at all.
(The choice of best/worst uses the same data, so the gap leans slightly positive; with no
disparity its CI still straddles zero, which the tests check on phantom data.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.defaults import SEED
from harness.fairness.protocol import MIN_SUBJECTS, PAPER_B
from harness.fairness.resample import balanced_group_f1, f1_from_counts, per_stratum_size
from harness.stats.bootstrap import bootstrap_se, ci_from_replicates, derive_seed


@dataclass
class GroupStats:
    f1_mean: float
    f1_std: float
    f1_ci: tuple[float, float]
    f1_observed: float  # on the items as they are (unbalanced), for reference
    n_subjects: int
    n_items: int
    n_positive: int
    n_negative: int


@dataclass
class AttributeResult:
    name: str
    groups: dict[str, GroupStats]
    per_stratum: int
    unknown: int  # items whose value is missing/unknown
    not_analysed: dict[str, int]  # values outside the requested groups, or lacking a class
    gap: dict[str, Any] | None  # a results-schema metric object
    replicates: np.ndarray | None = None  # (B, n_groups) F1, for plots and tests


@dataclass
class FairnessResult:
    B: int
    seed: int
    per_stratum_rule: str
    attributes: dict[str, AttributeResult]
    warnings: list[str] = field(default_factory=list)


def analyse(
    table: pd.DataFrame,
    attributes: Sequence[str],
    groups: dict[str, Sequence[str]] | None = None,
    B: int = PAPER_B,
    seed: int = SEED,
    per_stratum: str | int = "min",
    min_subjects: int = MIN_SUBJECTS,
) -> FairnessResult:
    """Run the balanced bootstrap for every attribute; `table` has y, pred, subject columns.

    Each attribute gets its own stream (`derive_seed(seed, attribute)`), so adding an
    attribute does not change the numbers of the others.
    """
    groups = groups or {}
    result = FairnessResult(B=B, seed=seed, per_stratum_rule=str(per_stratum), attributes={})
    pred = table["pred"].to_numpy(dtype=bool)
    y = table["y"].to_numpy(dtype=bool)
    subjects = table["subject"].astype(str).to_numpy()
    for attr in attributes:
        column = table[attr]
        known = column.notna().to_numpy()
        values = np.where(known, column.astype(str).to_numpy(), "")
        unknown = int((~known).sum())
        if unknown:
            result.warnings.append(
                f"{attr}: {unknown} item(s) with missing/unknown value left out (never guessed)"
            )
        present = sorted(set(values[known].tolist()))
        wanted = list(groups.get(attr) or present)
        not_analysed: dict[str, int] = {
            v: int((values == v).sum()) for v in present if v not in wanted
        }
        usable: list[str] = []
        masks: dict[str, np.ndarray] = {}
        for g in wanted:
            mask = known & (values == g)
            n_pos, n_neg = int((mask & y).sum()), int((mask & ~y).sum())
            if n_pos == 0 or n_neg == 0:
                result.warnings.append(
                    f"{attr}={g}: {n_pos} positive and {n_neg} negative items; needs both, left out"
                )
                not_analysed[g] = n_pos + n_neg
                continue
            usable.append(g)
            masks[g] = mask
        if not usable:
            result.attributes[attr] = AttributeResult(attr, {}, 0, unknown, not_analysed, None)
            continue
        positives = [np.flatnonzero(masks[g] & y) for g in usable]
        negatives = [np.flatnonzero(masks[g] & ~y) for g in usable]
        size = per_stratum_size(
            [len(s) for pair in zip(positives, negatives, strict=True) for s in pair], per_stratum
        )
        rng = np.random.default_rng(derive_seed(seed, attr))
        reps = balanced_group_f1(pred, positives, negatives, size, B, rng)
        lows, highs = np.quantile(reps, [0.025, 0.975], axis=0)
        stats: dict[str, GroupStats] = {}
        for j, g in enumerate(usable):
            m = masks[g]
            n_subjects = len(set(subjects[m].tolist()))
            if n_subjects < min_subjects:
                result.warnings.append(
                    f"{attr}={g}: only {n_subjects} unique subjects (< {min_subjects}); "
                    "its F1 rests on few people and may not generalise"
                )
            tp = int((m & y & pred).sum())
            fp = int((m & ~y & pred).sum())
            fn = int((m & y & ~pred).sum())
            stats[g] = GroupStats(
                f1_mean=float(reps[:, j].mean()),
                f1_std=float(reps[:, j].std(ddof=1)),
                f1_ci=(float(lows[j]), float(highs[j])),
                f1_observed=float(f1_from_counts(tp, fp, fn)),
                n_subjects=n_subjects,
                n_items=int(m.sum()),
                n_positive=len(positives[j]),
                n_negative=len(negatives[j]),
            )
        result.attributes[attr] = AttributeResult(
            attr, stats, size, unknown, not_analysed, _gap(usable, reps, B, seed, size), reps
        )
    return result


def _gap(
    groups: list[str], reps: np.ndarray, B: int, seed: int, size: int
) -> dict[str, Any] | None:
    if len(groups) < 2:
        return None
    means = reps.mean(axis=0)
    best, worst = int(np.argmax(means)), int(np.argmin(means))
    diff = reps[:, best] - reps[:, worst]
    ci = ci_from_replicates(diff, "balanced-bootstrap/best-minus-worst", B, seed)
    return {
        "value": float(diff.mean()),
        "stderr": bootstrap_se(diff),
        "ci": [ci.low, ci.high],
        "ci_method": ci.method,
        "n": int(B),
        "config": {
            "best": groups[best],
            "worst": groups[worst],
            "B": B,
            "seed": seed,
            "per_stratum": size,
            "definition": "F1(best) - F1(worst) per sample",
        },
    }


def to_block(
    result: FairnessResult,
    *,
    task: str,
    protocol: str,
    positive: str,
    n_items: int,
    n_subjects: int,
    excluded: dict[str, int],
    unparseable: int,
) -> dict[str, Any]:
    """The `fairness` block of the results JSON (shape in docs/statistics.md)."""
    attributes = {}
    for name, attr in result.attributes.items():
        attributes[name] = {
            "groups": {g: {**s.__dict__, "f1_ci": list(s.f1_ci)} for g, s in attr.groups.items()},
            "gap": attr.gap,
            "per_stratum": attr.per_stratum,
            "unknown": attr.unknown,
            "not_analysed": attr.not_analysed,
        }
    return {
        "task": task,
        "protocol": protocol,
        "positive": positive,
        "B": result.B,
        "seed": result.seed,
        "per_stratum_rule": result.per_stratum_rule,
        "n_items": n_items,
        "n_subjects": n_subjects,
        "excluded": dict(excluded),
        "unparseable_predictions": unparseable,
        "attributes": attributes,
        "warnings": list(result.warnings),
    }
