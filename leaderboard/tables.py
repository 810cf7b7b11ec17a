"""Pivots from leaderboard entries to the tables the page shows.

Everything is driven by what the results files contain: a subtask is a (task, dataset) pair
with a dict of metrics, so a new task, dataset or metric shows up as a new row or column.
`harness.taxonomy` only supplies pretty names and the paper's row order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from harness.results_schema import MetricValue, SubtaskResult
from harness.taxonomy import DATASET_BY_SLUG, SUBTASKS, TASK_BY_SLUG
from leaderboard.loader import PAPER, Entry, mc_mode

MEAN_TASKS = "Mean over tasks"
MEAN_PAIRS = "Mean over pairs"
BEST = "best"
TIED = "tied"  # a comparable row whose 95% CI overlaps the best one's: not beaten
_ORDER = {(s.task.slug, s.dataset.slug): i for i, s in enumerate(SUBTASKS)}

LONG_COLUMNS = [
    "task",
    "dataset",
    "Task",
    "Dataset",
    "order",
    "label",
    "model",
    "provenance",
    "metric",
    "value",
    "lo",
    "hi",
    "n",
    "comparable",
    "protocol",
]


def task_title(slug: str) -> str:
    task = TASK_BY_SLUG.get(slug)
    return task.title if task else slug.replace("_", " ").title()


def dataset_title(slug: str) -> str:
    dataset = DATASET_BY_SLUG.get(slug)
    return dataset.title if dataset else slug.replace("_", " ").title()


def row_order(task: str, dataset: str) -> tuple[int, str, str]:
    """Table 2 order for known pairs; new pairs follow, alphabetically."""
    return (_ORDER.get((task, dataset), len(_ORDER)), task, dataset)


def headline_of(sub: SubtaskResult) -> str | None:
    if sub.headline and sub.headline in sub.metrics:
        return sub.headline
    return next(iter(sub.metrics), None)


def metric_names(entries: Iterable[Entry], kind: str) -> list[str]:
    """Every metric any entry reports for `kind`, the most common headline first."""
    counts: dict[str, int] = {}
    names: set[str] = set()
    for entry in entries:
        for sub in entry.results.subtasks.values():
            if sub.kind != kind:
                continue
            names.update(sub.metrics)
            head = headline_of(sub)
            if head:
                counts[head] = counts.get(head, 0) + 1
    heads = sorted(counts, key=lambda m: (-counts[m], m))
    return heads + sorted(names - set(heads))


def long_frame(entries: Sequence[Entry], kind: str, metric: str | None = None) -> pd.DataFrame:
    """One row per (entry, subtask, metric). `metric=None` keeps every metric."""
    rows = []
    for entry in entries:
        for sub in entry.results.subtasks.values():
            if sub.kind != kind:
                continue
            for name, mv in sub.metrics.items():
                if metric is not None and name != metric:
                    continue
                rows.append(_row(entry, sub, name, mv))
    frame = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return frame.sort_values(["order", "task", "dataset", "label"], kind="stable").reset_index(
        drop=True
    )


def _row(entry: Entry, sub: SubtaskResult, name: str, mv: MetricValue) -> dict:
    lo, hi = mv.ci if mv.ci else (math.nan, math.nan)
    return {
        "task": sub.task,
        "dataset": sub.dataset,
        "Task": task_title(sub.task),
        "Dataset": dataset_title(sub.dataset),
        "order": row_order(sub.task, sub.dataset)[0],
        "label": entry.label,
        "model": entry.results.model.name,
        "provenance": entry.provenance,
        "metric": name,
        "value": math.nan if mv.value is None else mv.value,
        "lo": lo,
        "hi": hi,
        "n": mv.n if mv.n is not None else sub.n,
        "comparable": entry.comparable_subtask(sub.name),
        # Multiple choice scored by option log-likelihood (the paper) or by a generated letter:
        # two protocols, which never compete for "best" with each other.
        "protocol": (mc_mode(entry.results) or "loglikelihood")
        if sub.kind == "perception"
        else "generation",
    }


def overview(long: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Table 2 layout: (Task, Dataset) rows, one column per entry label, values in percent,
    followed by the two mean rows (see `mean_rows`)."""
    if long.empty:
        return pd.DataFrame()
    wide = _pivot(long, "value", labels) * 100.0
    return pd.concat([wide, mean_rows(wide)])


def _pivot(long: pd.DataFrame, values: str, labels: Sequence[str] | None) -> pd.DataFrame:
    """(Task, Dataset) rows in Table 2 order, one column per label."""
    wide = long.pivot_table(
        index=["order", "task", "dataset", "Task", "Dataset"],
        columns="label",
        values=values,
        aggfunc="first",
        sort=False,
    )
    wide = wide.sort_index(level=["order", "task", "dataset"])
    wide.index = wide.index.droplevel(["order", "task", "dataset"])
    wide.columns.name = None
    if labels is not None:
        wide = wide[[c for c in labels if c in wide.columns]]
    return wide


def mean_rows(wide: pd.DataFrame) -> pd.DataFrame:
    """The averages a reader of Table 2 would compute.

    The paper prints no mean row; its prose compares models "across image perception tasks"
    and reports per task. So the first mean weighs each task equally (datasets averaged within
    a task first: View Classification's two datasets do not count twice); the second is the
    plain mean over (task, dataset) pairs. A model missing any row gets no mean, because a
    mean over a different subset is not comparable.
    """
    complete = wide.notna().all(axis=0)
    per_task = wide.groupby(level="Task", sort=False).mean()
    by_task = per_task.mean(axis=0).where(complete)
    by_pair = wide.mean(axis=0).where(complete)
    index = pd.MultiIndex.from_tuples(
        [(MEAN_TASKS, f"{len(per_task)} tasks"), (MEAN_PAIRS, f"{len(wide)} pairs")],
        names=wide.index.names,
    )
    return pd.DataFrame([by_task, by_pair], index=index)


def ci_text(long: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The overview as "97.5 ± 1.4" strings (half-width of the 95% CI, percent)."""
    frame = long.copy()
    half = (frame["hi"] - frame["lo"]) / 2 * 100
    frame["text"] = [
        "" if math.isnan(v) else (f"{v * 100:.1f}" + ("" if math.isnan(h) else f" ± {h:.1f}"))
        for v, h in zip(frame["value"], half, strict=True)
    ]
    wide = _pivot(frame, "text", labels)
    return wide.fillna("")


def best_marks(
    long: pd.DataFrame, wide: pd.DataFrame, higher_is_better: bool = True
) -> pd.DataFrame:
    """BEST, TIED or "" for every cell of `wide` (an `overview` of `long`, any row or column
    order, mean rows included).

    Only comparable cells compete (leaderboard.provenance: paper, reproduced or accepted, on
    official data, with Table 9's n); pending, synthetic, unverified-data and partial cells
    are never best. The best value in a row is BEST; a comparable cell whose 95% CI overlaps
    a best cell's CI (a point where a row has no CI) is TIED, since the data cannot tell them
    apart. A mean row competes among the columns comparable in every row. Columns of the two
    multiple-choice protocols (log-likelihood, generation) compete only among themselves.
    """
    marks = pd.DataFrame("", index=wide.index, columns=wide.columns)
    if wide.empty:
        return marks
    protocols = long.groupby("label")["protocol"].first().reindex(wide.columns)
    if protocols.nunique() > 1:
        for protocol in protocols.dropna().unique():
            cols = [c for c in wide.columns if protocols[c] == protocol]
            sub = best_marks(long[long["label"].isin(cols)], wide[cols], higher_is_better)
            marks[cols] = sub
        return marks
    labels = list(wide.columns)
    means = wide.index.get_level_values(0).isin([MEAN_TASKS, MEAN_PAIRS])
    lo = (_pivot(long, "lo", labels) * 100.0).reindex(index=wide.index, columns=wide.columns)
    hi = (_pivot(long, "hi", labels) * 100.0).reindex(index=wide.index, columns=wide.columns)
    ok = _pivot(long.assign(comparable=long["comparable"].astype(float)), "comparable", labels)
    ok = ok.reindex(index=wide.index, columns=wide.columns).fillna(0.0).astype(bool)
    body_ok = ok[~means].all(axis=0) if (~means).any() else pd.Series(False, index=labels)
    ok[means] = [body_ok.to_numpy()] * int(means.sum())
    for i in range(len(wide)):
        values = wide.iloc[i]
        live = ok.iloc[i] & values.notna()
        if not live.any():
            continue
        best = values[live].max() if higher_is_better else values[live].min()
        lows = lo.iloc[i].where(lo.iloc[i].notna() & hi.iloc[i].notna(), values)
        highs = hi.iloc[i].where(lo.iloc[i].notna() & hi.iloc[i].notna(), values)
        winners = [c for c in labels if live[c] and values[c] == best]
        for col in labels:
            if not live[col]:
                continue
            if col in winners:
                marks.iloc[i, labels.index(col)] = BEST
            elif any(lows[col] <= highs[w] and lows[w] <= highs[col] for w in winners):
                marks.iloc[i, labels.index(col)] = TIED
    return marks


def paper_deltas(entries: Sequence[Entry], kind: str = "perception") -> pd.DataFrame:
    """Reproduced (or submitted) minus paper, per subtask and metric both report.

    `paper_in_ci` says whether the paper's number lies in the reproduction's 95% CI: the
    simplest "does it match" a user can act on.
    """
    papers = [e for e in entries if e.provenance == PAPER]
    rows = []
    for entry in entries:
        if entry.provenance == PAPER:
            continue
        for paper in (p for p in papers if p.same_model(entry)):
            for sub in entry.results.subtasks.values():
                if sub.kind != kind:
                    continue
                ref = _find(paper, sub.task, sub.dataset, kind)
                if ref is None:
                    continue
                for name, mv in sub.metrics.items():
                    pv = ref.metrics.get(name)
                    if pv is None or pv.value is None or mv.value is None:
                        continue
                    lo, hi = mv.ci if mv.ci else (math.nan, math.nan)
                    rows.append(
                        {
                            "Task": task_title(sub.task),
                            "Dataset": dataset_title(sub.dataset),
                            "order": row_order(sub.task, sub.dataset)[0],
                            "model": entry.label,
                            "metric": name,
                            "paper": pv.value * 100,
                            "this run": mv.value * 100,
                            "ci_lo": lo * 100,
                            "ci_hi": hi * 100,
                            "delta": (mv.value - pv.value) * 100,
                            "paper_in_ci": (bool(lo <= pv.value <= hi) if mv.ci else None),
                        }
                    )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return (
        frame.sort_values(["model", "order"], kind="stable")
        .drop(columns="order")
        .reset_index(drop=True)
    )


def _find(entry: Entry, task: str, dataset: str, kind: str) -> SubtaskResult | None:
    for sub in entry.results.subtasks.values():
        if sub.task == task and sub.dataset == dataset and sub.kind == kind:
            return sub
    return None


def text_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """Tables 3 and 4 in one long table: one row per (task, dataset, model), one column per
    metric any file reports, values in percent ("97.5"), CI half-widths as ±."""
    long = long_frame(entries, "text")
    if long.empty:
        return pd.DataFrame()
    long["cell"] = [
        _fmt(v, lo, hi) for v, lo, hi in zip(long["value"], long["lo"], long["hi"], strict=True)
    ]
    wide = long.pivot_table(
        index=["order", "Task", "Dataset", "label", "provenance"],
        columns="metric",
        values="cell",
        aggfunc="first",
        sort=False,
    )
    wide = wide.sort_index(level=["order", "Task", "Dataset"]).reset_index()
    wide = wide.drop(columns="order").rename(columns={"label": "Model", "provenance": "Provenance"})
    wide.columns.name = None
    return wide.fillna("")


def _fmt(value: float, lo: float, hi: float) -> str:
    if math.isnan(value):
        return "n/a"
    text = f"{value * 100:.1f}"
    if not math.isnan(lo) and not math.isnan(hi):
        text += f" ± {(hi - lo) * 50:.1f}"
    return text


def judge_frame(entries: Sequence[Entry]) -> pd.DataFrame:
    """Figure 3's bars from `judge` blocks: one row per (judge file, pair, outcome)."""
    rows = []
    for entry in entries:
        block = entry.results.judge or {}
        for pair in block.get("pairs") or []:
            if not isinstance(pair, dict):
                continue
            for outcome in ("win", "tie", "loss"):
                value, lo, hi = _metric_parts(pair.get(outcome))
                rows.append(
                    {
                        "judge": block.get("judge_model", "?"),
                        "source": entry.label,
                        "pair": f"{pair.get('model_a', '?')} vs {pair.get('model_b', '?')}",
                        "task": task_title(str(pair.get("task", ""))),
                        "outcome": outcome,
                        "value": value,
                        "lo": lo,
                        "hi": hi,
                        "n": pair.get("n"),
                        "position_flip_rate": pair.get("position_flip_rate"),
                    }
                )
    return pd.DataFrame(rows)


def fairness_frame(entries: Sequence[Entry]) -> pd.DataFrame:
    """Figure 6's bars from `fairness` blocks: one row per (file, attribute, group)."""
    rows = []
    for entry in entries:
        block = entry.results.fairness or {}
        for attribute, spec in (block.get("attributes") or {}).items():
            if not isinstance(spec, dict):
                continue
            gap, gap_lo, gap_hi = _metric_parts(spec.get("gap"))
            for group, stats in (spec.get("groups") or {}).items():
                if not isinstance(stats, dict):
                    continue
                rows.append(
                    {
                        "source": entry.label,
                        "model": entry.results.model.name,
                        "task": str(block.get("task", "")),
                        "attribute": attribute,
                        "group": group,
                        "f1_mean": _num(stats.get("f1_mean")),
                        "f1_std": _num(stats.get("f1_std")),
                        "n_subjects": stats.get("n_subjects"),
                        "n_items": stats.get("n_items"),
                        "gap": gap,
                        "gap_lo": gap_lo,
                        "gap_hi": gap_hi,
                    }
                )
    return pd.DataFrame(rows)


def _num(x: object) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def _metric_parts(obj: object) -> tuple[float, float, float]:
    """(value, lo, hi) of a metric object or a bare number, NaN where absent."""
    if isinstance(obj, dict):
        ci = obj.get("ci") or (None, None)
        lo, hi = (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None)
        return _num(obj.get("value")), _num(lo), _num(hi)
    return _num(obj), math.nan, math.nan


def tooltips(long: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Hover text per overview cell: the 95% CI and n, where the results file has them."""
    frame = long.copy()
    frame["tip"] = [
        ("" if math.isnan(lo) else f"95% CI {lo * 100:.1f}–{hi * 100:.1f}")
        + (f" · n={int(n)}" if isinstance(n, int | float) and not math.isnan(n) else "")
        for lo, hi, n in zip(frame["lo"], frame["hi"], frame["n"], strict=True)
    ]
    wide = _pivot(frame, "tip", labels)
    return wide
