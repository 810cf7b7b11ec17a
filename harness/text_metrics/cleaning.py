"""The official CheXagent text clean-up, applied to predictions and references alike.

Scores are only comparable with the paper's when both sides go through the same clean-up, so
every metric in this package sees the cleaned text and nothing else.
"""

from __future__ import annotations

import re

# Exactly the official expression, in its order (evaluation_chexbench/axis_3_text_generation/
# run_findings_generation.py): re.sub("\s+", " ", re.sub("\[.*?\]", "", x).replace("**", ""))
# .strip().lower(). Spans are removed, not replaced by a space, and "." does not cross newlines.
_BRACKETED = re.compile(r"\[.*?\]")
_WHITESPACE = re.compile(r"\s+")


def clean_report(text: str | None) -> str:
    """Drop `[...]` spans and `**`, collapse whitespace, lowercase (None becomes "")."""
    if text is None:
        return ""
    text = _BRACKETED.sub("", text).replace("**", "")
    return _WHITESPACE.sub(" ", text).strip().lower()
