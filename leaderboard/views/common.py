"""Small Streamlit helpers shared by the tabs."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from leaderboard.export import figure_png

TABLE_CSS = """<style>
table.chexbench-overview, table.chexbench-text {border-collapse: collapse; width: 100%;
  font-size: 14px;}
.chexbench-overview th, .chexbench-overview td, .chexbench-text th, .chexbench-text td {
  border-bottom: 1px solid #e6e9ef; padding: 6px 10px; white-space: nowrap;}
.chexbench-overview thead th, .chexbench-text thead th {background: #f7f8fa; font-weight: 600;
  text-align: right;}
.chexbench-overview td, .chexbench-text td {text-align: right;
  font-variant-numeric: tabular-nums;}
.chexbench-overview tbody th {text-align: left; font-weight: 500; color: #37474f;}
.chexbench-text td.col0, .chexbench-text td.col1, .chexbench-text td.col2 {text-align: left;}
.chexbench-overview tbody tr:hover td, .chexbench-text tbody tr:hover td {
  background-color: #fafbfc;}
.chexbench-overview td:hover span {visibility: visible !important;}
</style>"""


def html_table(frame: pd.DataFrame, css_class: str) -> str:
    """A plain HTML table (text stays in the page: selectable, searchable, testable)."""
    styler = frame.style.hide(axis="index").set_table_attributes(f'class="{css_class}"')
    return TABLE_CSS + styler.to_html()


def chart(fig: go.Figure, key: str) -> None:
    """A plotly chart with a PNG download rendered on demand (kaleido takes seconds)."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{key}")
    st.download_button(
        "PNG", data=lambda: figure_png(fig), file_name=f"{_slug(key)}.png", mime="image/png",
        key=f"png-{key}", icon=":material/download:", on_click="ignore")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "chart"
