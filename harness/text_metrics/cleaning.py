"""The official CheXagent text clean-up, applied to predictions and references alike.

Scores are only comparable with the paper's when both sides go through the same clean-up, so
every metric in this package sees the cleaned text and nothing else.
"""

from __future__ import annotations

import re

_BRACKETED = re.compile(r"\[[^\]]*\]")  # "[...]" placeholders and other bracketed tags
_WHITESPACE = re.compile(r"\s+")


def clean_report(text: str | None) -> str:
    """Drop `[...]` spans and `**`, collapse whitespace, lowercase (None becomes "")."""
    if text is None:
        return ""
    text = _BRACKETED.sub(" ", text).replace("**", " ")
    return _WHITESPACE.sub(" ", text).strip().lower()
