"""The study's fixed design: the paper's three questions and its five-point A/B scale.

Kept in one place so packets, the REDCap dictionary and the analysis cannot drift apart.
"""

from __future__ import annotations

TASKS = ("findings_generation", "findings_summarization")
# Short codes prefix the opaque item ids (REDCap field names must start with a letter).
TASK_CODES = {"findings_generation": "fg", "findings_summarization": "fs"}

# Figure 4: "Which radiology report findings section ... "
ATTRIBUTES = ("completeness", "correctness", "conciseness")
QUESTIONS = {
    "completeness": "Which findings section more completely captures important information?",
    "correctness": "Which findings section includes less false information?",
    "conciseness": "Which findings section contains less non-important information?",
}
TASK_TITLES = {
    "findings_generation": "Findings generation",
    "findings_summarization": "Findings summarization",
}
TASK_INSTRUCTIONS = {
    "findings_generation": "Look at the image(s) and the indication, then compare the two "
    "findings sections A and B.",
    "findings_summarization": "Read the findings, then compare the two impressions (summaries) "
    "A and B.",
}

# Codes 1..5 as written in packets and REDCap; the label is what the reader sees.
SCALE = {
    1: "A significantly better",
    2: "A slightly better",
    3: "Neither",
    4: "B slightly better",
    5: "B significantly better",
}
# Figure 4's axis: how strongly side A is preferred (negative = side B preferred).
A_PREFERENCE = {1: 10.0, 2: 5.0, 3: 0.0, 4: -5.0, 5: -10.0}
SCORE_DOMAIN = (-10.0, -5.0, 0.0, 5.0, 10.0)

PHYSICIAN = "physician"


def parse_answer(raw: str) -> int | None:
    """A code 1..5 from a cell holding the code or its label; None when it is neither."""
    text = raw.strip()
    if text.isdigit() and int(text) in SCALE:
        return int(text)
    for code, label in SCALE.items():
        if text.casefold() == label.casefold():
            return code
    return None


def score_for_x(code: int, x_side: str) -> float:
    """Figure 4's score: positive favours system X (the model), negative system Y."""
    pref_a = A_PREFERENCE[code]
    return pref_a if x_side == "A" else -pref_a
