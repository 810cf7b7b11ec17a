"""The CheXbench leaderboard page.

Run with `chexbench leaderboard [--results DIR] [--port N]`, or
`streamlit run leaderboard/app.py -- --results DIR`; the folder may also come from the
CHEXBENCH_RESULTS environment variable (default: ./results).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

from leaderboard.loader import DEMO, PENDING, PROVENANCES, TRUSTED, Loaded, load_folder
from leaderboard.views import models, overview, submit, text
from leaderboard.views.common import md

RESULTS_ENV = "CHEXBENCH_RESULTS"


def results_root(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return str(Path(args.results or os.environ.get(RESULTS_ENV) or "results").resolve())


def _signature(root: str) -> tuple:
    """Changes whenever a results file is added, removed or rewritten (or a status changes)."""
    base = Path(root)
    if not base.is_dir():
        return ()
    return tuple(
        sorted(
            (str(p), p.stat().st_mtime_ns, p.stat().st_size)
            for p in base.rglob("*.json")
            if p.is_file()
        )
    )


@st.cache_resource(max_entries=4, show_spinner="Loading results…")
def _load(root: str, signature: tuple) -> Loaded:
    return load_folder(root)


def main() -> None:
    st.set_page_config(page_title="CheXbench leaderboard", page_icon="🩻", layout="wide")
    root = results_root()
    loaded = _load(root, _signature(root))
    with st.sidebar:
        st.header("Rows")
        show_pending = st.toggle(
            "Show pending submissions",
            value=False,
            key="show-pending",
            help="Uploaded bundles no maintainer has reviewed yet: their "
            "numbers are the uploader's claim.",
        )
        show_demo = st.toggle(
            "Show synthetic demo rows",
            value=False,
            key="show-demo",
            help="Numbers from synthetic phantom data or random-weight smoke "
            "models: they test the pipeline and mean nothing.",
        )
        offered = [
            p
            for p in PROVENANCES
            if p in TRUSTED or (p == PENDING and show_pending) or (p == DEMO and show_demo)
        ]
        chosen = st.multiselect(
            "Provenance", offered, default=offered, key=f"provenance-{show_pending}-{show_demo}"
        )  # resets on toggle
        st.caption("Results folder: " + md(root))
    entries = [e for e in loaded.entries if e.provenance in chosen]

    st.title("CheXbench leaderboard")
    st.caption(
        "Chest X-ray foundation models on CheXbench (CheXagent paper, section 5): the "
        "paper's reported numbers beside runs reproduced with this harness and community "
        "submissions, with 95% confidence intervals where a run has them."
    )
    shown = {e.provenance for e in entries}
    # One container whatever is shown, so the tabs below keep their place in the page when a
    # toggle adds or removes a notice (a shifted element tree leaves stale copies mid-rerun).
    with st.container():
        if PENDING in shown:
            st.warning(
                "Pending submissions are shown: their columns read *submitted "
                "(pending)* and their numbers are unreviewed claims.",
                icon=":material/pending:",
            )
        if DEMO in shown:
            st.warning(
                "Synthetic demo rows are shown: phantom data or random weights.",
                icon=":material/science:",
            )
    submit.render_rejected(loaded.rejected, root)
    tabs = st.tabs(
        ["Overview", "Per task", "Text", "Fairness", "Compare", "Drill-down", "Run card", "Submit"]
    )
    with tabs[0]:
        overview.render_overview(entries)
    with tabs[1]:
        overview.render_bars(entries)
    with tabs[2]:
        text.render_text(entries)
    with tabs[3]:
        text.render_fairness(entries)
    with tabs[4]:
        models.render_compare(entries)
    with tabs[5]:
        models.render_drilldown(entries)
    with tabs[6]:
        models.render_run_card(entries, root)
    with tabs[7]:
        submit.render_submit(root)


if __name__ == "__main__":
    main()
