"""Tab 5 (compare two models), tab 6 (drill-down) and tab 7 (run card)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from leaderboard import charts, drilldown
from leaderboard.compare import POINT_ONLY, compare
from leaderboard.loader import Entry
from leaderboard.views.common import chart, md

PAGE_SIZE = 10


def render_compare(entries: Sequence[Entry]) -> None:
    runs = sorted(
        (e for e in entries if _perception_values(e)),
        key=lambda e: -sum(_perception_values(e)) / len(_perception_values(e)),
    )
    if len(runs) < 2:
        st.info("Comparing needs two runs with image-perception results.")
        return
    labels = [e.label for e in runs]
    left, right = st.columns(2)
    a_label = left.selectbox("Model A", labels, index=0, key="cmp-a")
    b_label = right.selectbox("Model B", labels, index=1, key="cmp-b")
    a = runs[labels.index(a_label)]
    b = runs[labels.index(b_label)]
    frame = compare(a, b, entries)
    if frame.empty:
        st.info("These two runs share no subtask.")
        return
    if (frame["ci_source"] == POINT_ONLY).any():
        st.warning(
            "Some rows are differences of point estimates only: neither a `comparison` "
            "block nor per-item samples exist for both runs, so no paired CI is "
            "possible there."
        )
    chart(charts.delta_forest(frame, a_label, b_label), key="compare")
    shown = frame[
        ["Task", "Dataset", "metric", "A", "B", "delta", "ci_lo", "ci_hi", "p", "ci_source"]
    ]
    st.dataframe(
        shown.style.format(
            {c: "{:.1f}" for c in ("A", "B", "ci_lo", "ci_hi")}
            | {"delta": "{:+.1f}", "p": "{:.3g}"},
            na_rep="–",
        ),
        width="stretch",
        hide_index=True,
        key="compare-table",
    )


def _perception_values(entry: Entry) -> list[float]:
    """Headline values, used only to put the strongest runs first in the pickers."""
    values = []
    for sub in entry.results.subtasks.values():
        metric = sub.metrics.get(sub.headline or "")
        if sub.kind == "perception" and metric is not None and metric.value is not None:
            values.append(metric.value)
    return values


def render_drilldown(entries: Sequence[Entry]) -> None:
    local = [e for e in entries if e.samples_path is not None]
    if not local:
        st.info(
            "No run here has a samples JSONL beside its results file "
            "(paper rows have none; `chexbench run` writes one)."
        )
        return
    labels = [e.label for e in local]
    entry = local[labels.index(st.selectbox("Run", labels, key="dd-run"))]
    rows = drilldown.load_samples(entry.samples_path)
    tasks = sorted({str(r.get("task")) for r in rows if "options" in r})
    if not tasks:
        st.info("This run's samples hold no multiple-choice items.")
        return
    task = st.selectbox("Subtask", tasks, key="dd-task")
    wrong_only = st.toggle("Only wrong answers", key="dd-wrong")
    items = [r for r in rows if r.get("task") == task and (not wrong_only or not r.get("correct"))]
    n_right = sum(bool(r.get("correct")) for r in rows if r.get("task") == task)
    n_all = sum(r.get("task") == task for r in rows)
    st.caption(f"{n_right} of {n_all} correct; showing {len(items)} items.")
    if not items:
        return
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="dd-page") if pages > 1 else 1
    for row in items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
        mark = ":material/check_circle:" if row.get("correct") else ":material/cancel:"
        title = f"{row.get('item_id')}: {row.get('question', '')}"[:150]
        with st.expander(f"{mark} {md(title)}", expanded=False):
            thumb, body = st.columns([1, 3])
            _thumbnail(thumb, row, entry)
            body.markdown(f"**Question:** {md(row.get('question', ''))}")
            body.dataframe(drilldown.option_scores(row), hide_index=True, width="stretch")
            prediction = drilldown.option_text(row, row.get("prediction"))
            body.markdown(
                f"**Prediction:** {md(prediction)}"
                f" · **Correct:** {'yes' if row.get('correct') else 'no'}"
            )


def _thumbnail(container, row: dict, entry: Entry) -> None:
    for raw in row.get("image_paths") or []:
        path = drilldown.resolve_image(str(raw), entry.path.parent, row.get("dataset"))
        if path is not None:
            container.image(str(path), width=180)
        else:
            container.caption(f"image not found: {md(raw)} (set CHEXBENCH_IMAGE_ROOT)")


def render_run_card(entries: Sequence[Entry], results_root: str) -> None:
    labels = [e.label for e in entries]
    if not labels:
        st.info("Nothing loaded.")
        return
    entry = entries[labels.index(st.selectbox("Row", labels, key="card-row"))]
    res = entry.results
    provenance = entry.trust.text if entry.trust else entry.provenance
    st.markdown(
        f"**Provenance:** {md(provenance)} · **run id:** {md(res.run_id)} · "
        f"**kind:** {md(res.kind)} · **file:** {md(_rel(entry, results_root))}"
    )
    for reason in entry.trust.reasons if entry.trust else ():
        st.caption(md(reason))
    if res.citation:
        st.markdown(f"**Citation:** {md(res.citation)}")
    st.markdown("**Model**")
    st.json(res.model.model_dump(exclude_none=True), expanded=True)
    st.markdown("**Run card**")
    if res.run_card is None:
        st.caption("Paper-reported row: no run card (numbers transcribed from the paper).")
    else:
        st.json(res.run_card.model_dump(), expanded=True)


def _rel(entry: Entry, root: str) -> str:
    try:
        return str(entry.path.relative_to(root))
    except ValueError:
        return str(entry.path)
