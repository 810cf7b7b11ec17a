"""Model A minus model B per subtask, with the best uncertainty the files allow.

In order of preference: a `comparison` block for exactly these two runs (written by the
harness's paired analysis: paired CI, p-values, Holm); else a paired bootstrap on the two
runs' per-item samples when both have them; else the difference of point estimates, flagged,
because unpaired numbers cannot say whether a small delta is real.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.io import read_jsonl
from leaderboard.loader import Entry
from leaderboard.tables import dataset_title, headline_of, row_order, task_title

FROM_BLOCK = "comparison block (paired)"
FROM_SAMPLES = "paired bootstrap on samples"
POINT_ONLY = "point estimates only (no paired data)"
BOOTSTRAP_B = 1000
BOOTSTRAP_SEED = 1234


def compare(a: Entry, b: Entry, entries: Sequence[Entry], kind: str = "perception") -> pd.DataFrame:
    rows = []
    block_rows = _comparison_rows(a, b, entries)
    samples_a = _samples_by_task(a)
    samples_b = _samples_by_task(b)
    subs_b = {(s.task, s.dataset): s for s in b.results.subtasks.values() if s.kind == kind}
    for sub_a in a.results.subtasks.values():
        sub_b = subs_b.get((sub_a.task, sub_a.dataset))
        if sub_a.kind != kind or sub_b is None:
            continue
        metric = headline_of(sub_a)
        if metric is None or metric not in sub_b.metrics:
            continue
        va, vb = sub_a.metrics[metric].value, sub_b.metrics[metric].value
        if va is None or vb is None:
            continue
        row = {
            "Task": task_title(sub_a.task),
            "Dataset": dataset_title(sub_a.dataset),
            "order": row_order(sub_a.task, sub_a.dataset)[0],
            "metric": metric,
            "A": va * 100,
            "B": vb * 100,
            "delta": (va - vb) * 100,
            "ci_lo": math.nan,
            "ci_hi": math.nan,
            "p": math.nan,
            "ci_source": POINT_ONLY,
        }
        block = block_rows.get((sub_a.name, metric)) or block_rows.get((sub_b.name, metric))
        if block:
            row.update(block)
        else:
            paired = _paired_from_samples(samples_a.get(sub_a.name), samples_b.get(sub_b.name))
            if paired:
                row.update(paired)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)
    frame["row"] = frame["Task"] + " · " + frame["Dataset"]
    return frame


def _comparison_rows(a: Entry, b: Entry, entries: Sequence[Entry]) -> dict:
    """Rows of a comparison block for (a, b) in either order; sign flipped for (b, a)."""
    ids = (a.results.run_id, b.results.run_id)
    for entry in entries:
        block = entry.results.comparison or {}
        pair = (block.get("run_a"), block.get("run_b"))
        if pair not in (ids, ids[::-1]):
            continue
        sign = 1.0 if pair == ids else -1.0
        out = {}
        for row in block.get("rows") or []:
            ci = row.get("ci") or [math.nan, math.nan]
            lo, hi = sorted((sign * float(ci[0]) * 100, sign * float(ci[1]) * 100))
            out[(row.get("subtask"), row.get("metric"))] = {
                "delta": sign * float(row["delta"]) * 100,
                "ci_lo": lo,
                "ci_hi": hi,
                "p": row.get("p_holm", row.get("p", math.nan)),
                "ci_source": FROM_BLOCK,
            }
        return out
    return {}


def _samples_by_task(entry: Entry) -> dict[str, list[dict]]:
    path = entry.samples_path
    if path is None:
        return {}
    out: dict[str, list[dict]] = {}
    for row in read_jsonl(path):
        if "correct" in row and isinstance(row.get("correct"), bool):
            out.setdefault(str(row.get("task")), []).append(row)
    return out


def _paired_from_samples(rows_a: list[dict] | None, rows_b: list[dict] | None) -> dict | None:
    if not rows_a or not rows_b:
        return None
    from harness.stats.paired import paired_delta_ci

    by_id = {r.get("item_id"): r for r in rows_b}
    common = [(r, by_id[r.get("item_id")]) for r in rows_a if r.get("item_id") in by_id]
    if len(common) < 2:
        return None
    a = np.array([float(ra["correct"]) for ra, _ in common])
    b = np.array([float(rb["correct"]) for _, rb in common])
    clusters = [ra.get("cluster_id") for ra, _ in common]
    cl = np.array(clusters) if all(c is not None for c in clusters) else None
    delta, ci = paired_delta_ci(a, b, cl, B=BOOTSTRAP_B, seed=BOOTSTRAP_SEED)
    return {
        "delta": delta * 100,
        "ci_lo": ci.low * 100,
        "ci_hi": ci.high * 100,
        "ci_source": f"{FROM_SAMPLES} ({len(common)} items, B={ci.B}, seed={ci.seed})",
    }
