"""Tab 8 (upload a bundle) and the rejected-files panel."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from leaderboard.loader import Rejected
from leaderboard.submission import MAX_BUNDLE_BYTES, BundleError, list_submissions, submit_bundle
from leaderboard.views.common import md


def render_rejected(rejected: Sequence[Rejected], results_root: str) -> None:
    if not rejected:
        return
    with st.expander(
        f"{len(rejected)} results file(s) rejected", expanded=False, icon=":material/warning:"
    ):
        st.dataframe(
            pd.DataFrame(
                [{"file": _rel(r.path, results_root), "reason": r.reason} for r in rejected]
            ),
            width="stretch",
            hide_index=True,
            key="rejected-table",
        )


def _rel(path, root: str) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def render_submit(results_root: str) -> None:
    st.markdown(
        "Upload a **zip** holding your results JSON (the harness's format, "
        "`docs/results-schema.md`) and its samples JSONL. It is checked against the schema "
        f"(at most {MAX_BUNDLE_BYTES // 2**20} MiB, `.json`/`.jsonl` only, safe file names, no "
        "duplicates, no synthetic or random-weight runs, n and accuracy matching the samples) "
        "and then waits as **pending**, hidden from the default view, until a maintainer "
        "accepts it. From a shell: `chexbench submit BUNDLE.zip`."
    )
    upload = st.file_uploader("Results bundle (.zip)", type=["zip"], key="bundle")
    outcomes = st.session_state.setdefault("submit-outcomes", {})
    if upload is not None and upload.file_id not in outcomes:
        # A widget keeps its file across reruns: remember the outcome, submit once.
        try:
            sub = submit_bundle(upload.getvalue(), results_root, upload.name)
            notes = [n for r in sub.status["results"] for n in r.get("notes", [])]
            outcomes[upload.file_id] = (
                "ok",
                f"Submission {md(sub.id)} received: status "
                "**pending** until a maintainer reviews it." + "".join(f" {md(n)}." for n in notes),
            )
        except BundleError as exc:
            outcomes[upload.file_id] = ("error", f"Rejected: {md(exc)}")
    if upload is not None:
        level, message = outcomes[upload.file_id]
        (st.success if level == "ok" else st.error)(message)
    subs = list_submissions(results_root)
    st.subheader("Submissions")
    if not subs:
        st.caption("None yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": s.get("id"),
                    "status": s.get("status"),
                    "submitted": s.get("submitted_at"),
                    "models": ", ".join(r.get("model", "?") for r in s.get("results", [])),
                    "file": s.get("original_name"),
                }
                for s in subs
            ]
        ),
        width="stretch",
        hide_index=True,
        key="submissions-table",
    )
    st.caption("Maintainers: `chexbench submissions list|accept|reject ID`.")
