"""Tab 3 (Tables 3 and 4, judge bars) and tab 4 (fairness)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from leaderboard import charts, tables
from leaderboard.loader import Entry
from leaderboard.views.common import chart, html_table, md

PAPER_METRIC_NOTE = (
    "Paper rows use the paper's own metric names: `bertscore_paper` (BERT-S), "
    "`chexbert_score_paper` (CheXbert-S), `radgraph_score_paper` (RadGraph-S), `rougeL` "
    "(Rouge-L). The paper does not say which variant of each score it used, so they are kept "
    "apart from this harness's metrics."
)


def render_text(entries: Sequence[Entry]) -> None:
    table = tables.text_table(entries)
    if table.empty:
        st.info("No text-generation results in this folder.")
    else:
        for task, part in table.groupby("Task", sort=False):
            st.subheader(md(task))
            part = part.drop(columns="Task").loc[:, lambda f: (f != "").any()]
            st.html(html_table(part, "chexbench-text"))
        st.caption("Scores in %; ± is half the 95% CI where known. " + PAPER_METRIC_NOTE)
    st.subheader("LLM judge (Figure 3)")
    judge = tables.judge_frame(entries)
    if judge.empty:
        st.caption("No results file with a `judge` block yet.")
    else:
        chart(charts.judge_bars(judge), key="judge")
        flips = judge.drop_duplicates(["source", "pair", "task"])
        st.dataframe(
            flips[["judge", "pair", "task", "n", "position_flip_rate", "source"]],
            width="stretch",
            hide_index=True,
            key="judge-table",
        )


def render_fairness(entries: Sequence[Entry]) -> None:
    frame = tables.fairness_frame(entries)
    if frame.empty:
        st.info("No results file with a `fairness` block yet.")
        return
    for source, part in frame.groupby("source", sort=False):
        st.subheader(md(source))
        chart(charts.fairness_bars(part), key=f"fair-{source}")
        gaps = part.drop_duplicates("attribute")[["attribute", "gap", "gap_lo", "gap_hi"]]
        st.dataframe(
            gaps.style.format("{:.3f}", subset=["gap", "gap_lo", "gap_hi"], na_rep="–"),
            width="stretch",
            hide_index=True,
            key=f"fair-gaps-{source}",
        )
