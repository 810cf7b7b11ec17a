"""`reader-study analyze`: un-blind the ratings with the key and compute Figure 4.

Each answer becomes a score from -10 to +10 (negative favours system Y, the physician in the
paper's design; positive favours system X, the model). The mean per task and attribute gets a
two-way bootstrap interval: every replicate resamples the items (by cluster when the key names
patients) and, independently, the readers, then averages the scores of every (item, reader)
cell drawn, weighted by how often each was drawn. That treats both the cases and the
radiologists as samples from larger populations, as a multi-reader multi-case study should.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.reader_study.agreement import alpha_metric, kendall_metric
from harness.reader_study.design import ATTRIBUTES, SCALE, score_for_x
from harness.reader_study.ratings import Rating
from harness.results_schema import MetricValue
from harness.stats.bootstrap import bootstrap_se, ci_from_replicates, derive_seed, metric_value

TWO_WAY_METHOD = "percentile-bootstrap/two-way(items x readers)"


def score_frame(keys: Sequence[dict[str, Any]], ratings: Sequence[Rating]) -> pd.DataFrame:
    """One row per answer, un-blinded: task, reader, item, attribute, code, score, comment."""
    by_study = {k["study_id"]: k for k in keys}
    items = {(k["study_id"], it["opaque_id"]): it for k in keys for it in k["items"]}
    rows = []
    for r in ratings:
        it = items[(r.study_id, r.opaque_id)]
        rows.append(
            {
                "study_id": r.study_id,
                "task": by_study[r.study_id]["task"],
                "reader": r.reader,
                "opaque_id": r.opaque_id,
                "item_id": it["item_id"],
                "cluster_id": it.get("cluster_id"),
                "attribute": r.attribute,
                "code": r.code,
                "x_side": it["x_side"],
                "score": score_for_x(r.code, it["x_side"]),
                "comment": r.comment,
            }
        )
    return pd.DataFrame(rows)


def two_way_replicates(
    scores: np.ndarray, clusters: Sequence[str] | None, B: int, seed: int
) -> np.ndarray:
    """Bootstrap means of an items x readers matrix, resampling items and readers."""
    s = np.asarray(scores, dtype=float)
    n_items, n_readers = s.shape
    rng = np.random.default_rng(seed)
    if clusters is not None:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        n_units = int(inverse.max()) + 1
        unit_w = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=B)
        item_w = unit_w[:, inverse].astype(float)
    else:
        item_w = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=B).astype(float)
    reader_w = rng.multinomial(n_readers, np.full(n_readers, 1 / n_readers), size=B)
    reader_w = reader_w.astype(float)
    num = np.einsum("bi,ir,br->b", item_w, s, reader_w)
    den = item_w.sum(axis=1) * reader_w.sum(axis=1)
    return num / den


def _two_way_metric(
    matrix: np.ndarray, clusters: Sequence[str] | None, B: int, seed: int
) -> MetricValue:
    reps = two_way_replicates(matrix, clusters, B, seed)
    unit = "cluster" if clusters is not None else "item"
    ci = ci_from_replicates(reps, TWO_WAY_METHOD, B, seed)
    return MetricValue(
        value=float(matrix.mean()),
        stderr=bootstrap_se(reps),
        ci=(ci.low, ci.high),
        ci_method=TWO_WAY_METHOD,
        n=int(matrix.size),
        config={
            "B": B,
            "seed": seed,
            "item_unit": unit,
            "n_items": int(matrix.shape[0]),
            "n_readers": int(matrix.shape[1]),
            "scale": "-10..10",
        },
    )


def _auto_metrics(key: dict[str, Any], order: list[str]) -> dict[str, np.ndarray]:
    """Per-item automatic metric for X (minus Y's when both sides are models)."""
    items = {it["opaque_id"]: it for it in key["items"]}
    common = set.intersection(*(set(items[o]["metrics_x"]) for o in order))
    if items[order[0]]["metrics_y"] is not None:
        common &= set.intersection(*(set(items[o]["metrics_y"] or {}) for o in order))
    out = {}
    for name in sorted(common):
        x = np.array([items[o]["metrics_x"][name] for o in order], dtype=float)
        if items[order[0]]["metrics_y"] is not None:
            x = x - np.array([items[o]["metrics_y"][name] for o in order], dtype=float)
        out[name] = x
    return out


def analyze_task(key: dict[str, Any], frame: pd.DataFrame, B: int, seed: int) -> dict[str, Any]:
    task = key["task"]
    df = frame[frame["study_id"] == key["study_id"]]
    readers = [r for r in key["readers"] if r in set(df["reader"])]
    order = [it["opaque_id"] for it in key["items"]]
    clusters_raw = [it.get("cluster_id") for it in key["items"]]
    clusters = clusters_raw if all(clusters_raw) else None
    out: dict[str, Any] = {
        "study_id": key["study_id"],
        "task": task,
        "n_items": len(order),
        "n_readers": len(readers),
        "readers": readers,
        "readers_missing": [r for r in key["readers"] if r not in readers],
        "x": key["x"]["name"],
        "y": key["y"]["name"],
        "balance": key.get("balance"),
        "attributes": {},
        "by_reader": {r: {} for r in readers},
        "distribution": {},
        "krippendorff_alpha": {},
        "metric_correlation": {},
    }
    preference: dict[str, np.ndarray] = {}
    for attr in ATTRIBUTES:
        sub = df[df["attribute"] == attr]
        matrix = (
            sub.pivot(index="opaque_id", columns="reader", values="score")
            .reindex(index=order, columns=readers)
            .to_numpy(dtype=float)
        )
        s = derive_seed(seed, f"{task}:{attr}")
        out["attributes"][attr] = _two_way_metric(matrix, clusters, B, s).model_dump()
        for j, r in enumerate(readers):
            out["by_reader"][r][attr] = metric_value(
                matrix[:, j],
                np.asarray(clusters) if clusters else None,
                B,
                derive_seed(seed, f"{task}:{attr}:{r}"),
                config={"scale": "-10..10"},
            ).model_dump()
        counts = sub["score"].value_counts()
        out["distribution"][attr] = {
            f"{v:g}": int(counts.get(v, 0)) for v in sorted({score_for_x(c, "A") for c in SCALE})
        }
        out["krippendorff_alpha"][attr] = alpha_metric(
            matrix.T, B, derive_seed(seed, f"{task}:{attr}:alpha")
        ).model_dump()
        preference[attr] = matrix.mean(axis=1)
    preference["mean"] = np.mean([preference[a] for a in ATTRIBUTES], axis=0)
    for name, auto in _auto_metrics(key, order).items():
        out["metric_correlation"][name] = {
            target: kendall_metric(
                auto, pref, B, derive_seed(seed, f"{task}:{name}:{target}")
            ).model_dump()
            for target, pref in preference.items()
        }
    return out
