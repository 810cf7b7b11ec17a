"""Small Streamlit helpers shared by the tabs, including the escaping every tab uses.

Model names, task keys, questions and error messages come from uploaded files. Streamlit
renders Markdown (links, `:red[...]` colours, headings) in st.markdown, captions, subheaders,
expander labels and alerts, and st.html keeps HTML that its sanitizer allows (headings,
styles, links). So user text reaches the page only through `md` (Markdown), `html_table`
(HTML, escaped by pandas' Styler) or widgets that show plain text (st.dataframe, st.json,
st.text, select boxes).
"""

from __future__ import annotations

import re
import string

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pandas.io.formats.style import Styler

from harness.safe_text import printable
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


_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
# GFM turns bare URLs and e-mail addresses into links after escapes are resolved, and
# Streamlit expands :shortcodes: the same way; a zero-width space after ":" and "@" and inside
# "www." breaks those patterns without changing what the reader sees.
_ZWSP = "\u200b"
_WWW = re.compile(r"(w)(ww\\?\.)", re.IGNORECASE)


def md(text: object) -> str:
    """`text` as literal Markdown: every ASCII punctuation character backslash-escaped (so no
    link, emphasis, HTML tag, `:color[]` directive or `$` math survives), URLs, e-mail
    addresses and shortcodes broken with a zero-width space, control characters shown as
    escapes and line breaks folded (no heading can start)."""
    flat = printable(" ".join(str(text).split()))
    escaped_md = _MD_SPECIAL.sub(r"\\\1", flat)
    escaped_md = escaped_md.replace("\\:", "\\:" + _ZWSP).replace("\\@", "\\@" + _ZWSP)
    return _WWW.sub(r"\1" + _ZWSP + r"\2", escaped_md)


def escaped(styler: Styler) -> Styler:
    """A Styler whose cells, index and column labels are HTML-escaped."""
    return (
        styler.format(escape="html", na_rep="")
        .format_index(escape="html", axis=0)
        .format_index(escape="html", axis=1)
    )


def html_table(frame: pd.DataFrame, css_class: str) -> str:
    """A plain HTML table (text stays in the page: selectable, searchable, testable), every
    cell and header escaped."""
    styler = escaped(frame.style).hide(axis="index").set_table_attributes(f'class="{css_class}"')
    return TABLE_CSS + styler.to_html()


def chart(fig: go.Figure, key: str) -> None:
    """A plotly chart with a PNG download rendered on demand (kaleido takes seconds)."""
    st.plotly_chart(fig, width="stretch", key=f"chart-{key}")
    st.download_button(
        "PNG",
        data=lambda: figure_png(fig),
        file_name=f"{_slug(key)}.png",
        mime="image/png",
        key=f"png-{key}",
        icon=":material/download:",
        on_click="ignore",
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "chart"
