"""From a run's per-sample rows to labelled fairness items joined with demographics.

The paper's protocol is fixed (section 7): CheXpert test frontal images, the question
"Does this chest X-ray contain cardiomegaly?" with Yes/No; a generic run picks its own
question pattern and positive answer. Every row that is dropped is counted by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.fairness.demographics import Demographics, match_id
from harness.fairness.protocol import PAPER_POSITIVE, PAPER_QUESTION

_LATERAL = re.compile(r"lateral", re.IGNORECASE)


@dataclass
class FairnessItems:
    table: pd.DataFrame  # item_id, subject, y, pred, one column per attribute (None = unknown)
    excluded: Counter = field(default_factory=Counter)
    unparseable: int = 0


def question_matcher(question: str | None, regex: str | None) -> re.Pattern[str]:
    """The paper's exact question (case and spacing ignored), or the user's regex."""
    if regex:
        return re.compile(regex, re.IGNORECASE)
    words = (question or PAPER_QUESTION).split()
    return re.compile(r"^\s*" + r"\s+".join(map(re.escape, words)) + r"\s*$", re.IGNORECASE)


def select_items(
    rows: Sequence[dict[str, Any]],
    demographics: Demographics,
    attributes: Sequence[str],
    *,
    where: str,
    question: re.Pattern[str] | None = None,
    positive: str = PAPER_POSITIVE,
    frontal_only: bool = True,
    task: str | None = None,
) -> FairnessItems:
    """Label each matching row (y, pred) and attach its subject and demographics.

    A missing prediction counts as the wrong answer (never a guess) and is reported.
    """
    question = question or question_matcher(None, None)
    out: list[dict[str, Any]] = []
    excluded: Counter = Counter()
    unparseable = 0
    for lineno, row in enumerate(rows, 1):
        here = f"{where}: line {lineno} (item {row.get('item_id')!r})"
        if task and row.get("task") != task:
            excluded["other task"] += 1
            continue
        if not isinstance(row.get("question"), str) or not question.search(row["question"]):
            excluded["other question"] += 1
            continue
        paths = row.get("image_paths") or []
        if isinstance(paths, str):
            paths = [paths]
        if frontal_only and any(_LATERAL.search(p) for p in paths):
            excluded["not frontal"] += 1
            continue
        y, pred, bad = _binary_labels(row, positive, here)
        unparseable += bad
        subject_key = match_id(demographics, paths, row.get("cluster_id"))
        if subject_key is None:
            excluded["no demographics record"] += 1
            continue
        record = demographics.table.loc[subject_key]
        subject = (
            subject_key
            if demographics.id_column in ("patient_id", "subject_id", "PATIENT")
            else row.get("cluster_id")
        )
        out.append(
            {
                "item_id": row.get("item_id", f"line{lineno}"),
                "subject": subject,
                "y": y,
                "pred": pred,
                **{a: record[a] for a in attributes},
            }
        )
    if not out:
        raise UserError(
            f"{where}: no rows left for the fairness analysis (dropped: "
            f"{dict(excluded) or 'none'}). Check the question (--question), the "
            "task (--task) and the demographics id column (--id-column)."
        )
    table = pd.DataFrame(out)
    return FairnessItems(table=table, excluded=excluded, unparseable=unparseable)


def _binary_labels(row: dict[str, Any], positive: str, here: str) -> tuple[bool, bool, int]:
    options = row.get("options")
    if not isinstance(options, list) or len(options) != 2:
        raise UserError(f"{here}: a binary fairness item needs exactly 2 options, got {options!r}")
    lowered = [str(o).strip().lower() for o in options]
    if positive.strip().lower() not in lowered:
        raise UserError(
            f"{here}: positive answer {positive!r} is not among options {options!r} "
            "(pass --positive)"
        )
    pos = lowered.index(positive.strip().lower())
    answer = row.get("answer")
    if not isinstance(answer, int) or not 0 <= answer < 2:
        raise UserError(f"{here}: 'answer' must be 0 or 1, got {answer!r}")
    y = answer == pos
    prediction = row.get("prediction")
    if isinstance(prediction, int) and not isinstance(prediction, bool) and 0 <= prediction < 2:
        return y, prediction == pos, 0
    return y, not y, 1
