"""Tab 1 (Table 2 layout) and tab 2 (per-task bars)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from harness.taxonomy import higher_is_better
from leaderboard import charts, tables
from leaderboard.export import overview_csv
from leaderboard.loader import PROVENANCES, Entry
from leaderboard.views.common import TABLE_CSS, chart, escaped, md

BEST_STYLE = "background-color: #d7f0dc; font-weight: 700; color: #14532d"
TIED_STYLE = "background-color: #eef8f0; color: #14532d"
MEAN_STYLE = "font-style: italic; background-color: #f4f6f8"
MARK_STYLE = {tables.BEST: BEST_STYLE, tables.TIED: TIED_STYLE}


def column_order(entries: Sequence[Entry], wide: pd.DataFrame) -> list[str]:
    """Models ranked by their best mean over tasks; one model's rows stay side by side
    (paper, then reproduced, ...) so a reproduction sits next to the number it checks."""
    mean = wide.loc[tables.MEAN_TASKS].iloc[0] if tables.MEAN_TASKS in wide.index else None
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.label in wide.columns:
            key = next((k for k, g in groups.items() if g[0].same_model(entry)), entry.label)
            groups.setdefault(key, []).append(entry)

    def score(group: list[Entry]) -> float:
        vals = [mean[e.label] for e in group if mean is not None and pd.notna(mean[e.label])]
        return max(vals) if vals else -1.0

    ordered = sorted(groups.values(), key=lambda g: (-score(g), g[0].results.model.name))
    return [
        e.label for g in ordered for e in sorted(g, key=lambda e: PROVENANCES.index(e.provenance))
    ]


def _css(wide: pd.DataFrame, marks: pd.DataFrame) -> pd.DataFrame:
    """Cell styles: best and tied cells (`tables.best_marks`), mean rows set apart."""
    means = wide.index.get_level_values(0).isin([tables.MEAN_TASKS, tables.MEAN_PAIRS])
    css = pd.DataFrame("", index=wide.index, columns=wide.columns)
    css[means] = MEAN_STYLE
    marks = marks.reindex(index=wide.index, columns=wide.columns).fillna("")
    for mark, style in MARK_STYLE.items():
        css[marks == mark] = css[marks == mark] + ";" + style
    return css


def styled(wide: pd.DataFrame, marks: pd.DataFrame) -> pd.io.formats.style.Styler:
    """The interactive grid (st.dataframe draws text, never HTML: no escaping needed)."""
    return wide.style.format("{:.1f}", na_rep="–").apply(lambda _: _css(wide, marks), axis=None)


def sort_rows(wide: pd.DataFrame, by: str | None, descending: bool) -> pd.DataFrame:
    """Sort the (task, dataset) rows by one column; the mean rows stay at the bottom."""
    if not by or by not in wide.columns:
        return wide
    means = wide.index.get_level_values(0).isin([tables.MEAN_TASKS, tables.MEAN_PAIRS])
    body = wide[~means].sort_values(by, ascending=not descending, na_position="last", kind="stable")
    return pd.concat([body, wide[means]])


def table_html(
    wide: pd.DataFrame, shown: pd.DataFrame, tips: pd.DataFrame, marks: pd.DataFrame
) -> str:
    """The overview as an HTML table: numbers stay plain text in the page (searchable,
    readable by screen readers and tests), CIs appear on hover, best and tied cells carry
    the classes `best` / `tied`. Every header and cell is HTML-escaped (model names are
    uploaders' text)."""
    marks = marks.reindex(index=shown.index, columns=shown.columns).fillna("")
    styler = (
        shown.style.apply(lambda _: _css(wide, marks), axis=None)
        .set_td_classes(marks)
        .set_tooltips(
            tips.reindex(index=shown.index, columns=shown.columns).fillna(""),
            props="visibility:hidden; position:absolute; z-index:1; "
            "background:#263238; color:#fff; padding:4px 8px; "
            "border-radius:4px; font-size:12px; white-space:nowrap; "
            "transform:translate(-30%, -130%);",
        )
        .hide(axis="index", names=True)
        .set_table_attributes('class="chexbench-overview"')
    )
    styler = escaped(styler)
    if shown.dtypes.map(pd.api.types.is_numeric_dtype).all():
        styler = styler.format("{:.1f}", na_rep="–")
    return TABLE_CSS + styler.to_html()


def render_overview(entries: Sequence[Entry]) -> None:
    metrics = tables.metric_names(entries, "perception")
    if not metrics:
        st.info("No image-perception results in this folder.")
        return
    long_all = tables.long_frame(entries, "perception")
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1.3], vertical_alignment="bottom")
    metric = c1.selectbox(
        "Metric",
        metrics,
        key="overview-metric",
        help="Each subtask's headline metric first; any metric a results "
        "file reports can be chosen.",
    )
    long = long_all[long_all["metric"] == metric]
    wide = tables.overview(long)
    order = column_order(entries, wide)
    wide = wide[order]
    by = c2.selectbox("Sort rows by", ["Table 2 order", *order], key="overview-sort")
    descending = c3.toggle("Descending", value=True, key="overview-desc")
    show_ci = c4.toggle(
        "Show 95% CI as ±",
        key="overview-ci",
        help="Paper rows carry no CI; reproduced runs do. Hover a cell for "
        "its interval either way.",
    )
    wide = sort_rows(wide, None if by == "Table 2 order" else by, descending)
    marks = tables.best_marks(long, wide, higher_is_better(metric))
    shown = (
        tables.ci_text(long, order).reindex(wide.index).fillna(wide.round(1).astype(str))
        if show_ci
        else wide
    )
    st.caption(
        "Accuracy in %, Table 2 layout (task × dataset rows, models as columns). "
        "**Best** per row in bold green, chosen among comparable rows only (paper, "
        "reproduced or accepted, on official data, with Table 9's n); rows whose 95% CI "
        "overlaps the best one's are **tied** (light green), not beaten. Hover a cell "
        "for its 95% CI. " + charts.provenance_legend()
    )
    st.html(table_html(wide, shown, tables.tooltips(long, order), marks))
    st.caption(
        f"**{tables.MEAN_TASKS}**: datasets averaged within each task, then the tasks "
        f"averaged (each task counts once). **{tables.MEAN_PAIRS}**: plain mean of the rows. "
        "The paper prints no mean row; models missing a row get no mean."
    )
    left, right = st.columns([1, 5])
    left.download_button(
        "Download CSV",
        overview_csv(wide),
        file_name=f"overview-{metric}.csv",
        mime="text/csv",
        key="overview-csv",
        icon=":material/download:",
        on_click="ignore",
    )
    with right.expander("Interactive grid (click a header to sort, search)"):
        st.dataframe(
            styled(wide, marks), width="stretch", height=38 + 35 * len(wide), key="overview-table"
        )
    deltas = tables.paper_deltas(entries)
    st.subheader("Paper vs. this harness")
    if deltas.empty:
        st.caption("No model has both a paper row and a reproduced or submitted run yet.")
    else:
        st.dataframe(
            deltas.style.format(
                {
                    "paper": "{:.1f}",
                    "this run": "{:.1f}",
                    "ci_lo": "{:.1f}",
                    "ci_hi": "{:.1f}",
                    "delta": "{:+.1f}",
                },
                na_rep="–",
            ),
            width="stretch",
            hide_index=True,
            key="paper-deltas",
        )


def render_bars(entries: Sequence[Entry]) -> None:
    metrics = tables.metric_names(entries, "perception")
    if not metrics:
        st.info("No image-perception results in this folder.")
        return
    left, right = st.columns([1, 4])
    metric = left.selectbox("Metric", metrics, key="bars-metric")
    long = tables.long_frame(entries, "perception", metric)
    # One chart at a time: a page of six 10-model bar charts is slow to build and to read.
    # Radio options render Markdown and a task's title can come from a results file.
    task = right.radio(
        "Task",
        list(long.drop_duplicates("task")["Task"]),
        format_func=md,
        horizontal=True,
        key="bars-task",
    )
    chart(charts.task_bars(long, task, metric), key=f"bars-{task}-{metric}")
    st.caption("Error bars: 95% CI where the results file has one (paper rows have none).")
