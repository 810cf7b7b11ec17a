"""Removing the surface cues that tell a reader which text a machine wrote.

A physician's report carries section headers, numbered lists, references to prior studies,
signatures and its own capitalisation; a model's output usually does not. Left in place these
unblind the study, so every text shown to a reader goes through `scrub`, and every change is
logged (the log lives beside the key, never in a packet). References to prior studies that
cannot be cut without changing the meaning are flagged, not edited: readers must judge the
text as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER_WORDS = (
    r"findings?|impressions?|indications?|clinical\s+(?:history|indication|information)|"
    r"history|comparisons?|technique|exam(?:ination)?|procedure|reason\s+for\s+"
    r"(?:exam(?:ination)?|study)|conclusions?|recommendations?|report|final\s+report|"
    r"wet\s+read|addendum|summary|opinion"
)
_HEADER = re.compile(rf"(?i)(?:^|(?<=[\s.;]))(?:{_HEADER_WORDS})\s*:\s*")

_LIST_MARK = re.compile(
    r"(?m)(?:^|(?<=[.;:]\s)|(?<=[.;:]))[ \t]*(?:\(?\d{1,2}[.)]|[-*\u2022])[ \t]+"
    r"(?=[A-Za-z])"
)

_SIGNATURE = re.compile(
    r"(?is)(?:^|(?<=[\s.;]))(?:electronically\s+signed|signed\s+(?:by|electronically)|"
    r"dictated\s+by|transcribed\s+by|reviewed\s+by|read\s+by|reported\s+by|approved\s+by|"
    r"attending\s+(?:radiologist|physician)\s*:|radiologist\s*:|"
    r"i\s+have\s+(?:personally\s+)?reviewed\s+the\s+images|"
    r"(?:final\s+)?report\s+(?:signed|approved)|--+\s*\n).*$"
)

_COMPARE_LEAD = r"(?:as\s+)?(?:compared\s+(?:to|with)|in\s+comparison\s+(?:to|with)|relative\s+to)"
_PRIOR_WORD = r"(?:prior|previous|earlier|last|recent)"
# "Compared to the prior study, ..." at the start of a sentence: cut cleanly.
_LEADING_COMPARE = re.compile(
    rf"(?i)(?:^|(?<=[.;]\s)|(?<=[.;]))\s*{_COMPARE_LEAD}\s+(?=[^,.;]*{_PRIOR_WORD})"
    rf"[^,.;]{{0,60}},\s*"
)
# "..., compared to prior." or "... compared with the previous radiograph." at a sentence end.
_TRAILING_COMPARE = re.compile(
    rf"(?i),?\s+{_COMPARE_LEAD}\s+(?=[^,.;]*{_PRIOR_WORD})[^,.;]{{0,60}}(?=[.;]|$)"
)
# "(compared to prior)" anywhere.
_PAREN_COMPARE = re.compile(rf"(?i)\s*\(\s*{_COMPARE_LEAD}[^()]{{0,60}}\)")
# What is left that still refers to an earlier study: flagged, not edited.
_TEMPORAL_CUE = re.compile(
    r"(?i)\b(?:compared\s+(?:to|with)|in\s+comparison|interval(?:ly)?|unchanged|"
    r"previous(?:ly)?|prior|since|again\s+(?:seen|noted|demonstrated|identified)|"
    r"re-?demonstrat\w*|persist\w*|no\s+(?:significant\s+)?(?:interval\s+)?change|"
    r"(?:has|have)\s+(?:increased|decreased|resolved|improved|worsened)|"
    r"improv(?:ed|ing|ement)|worsen(?:ed|ing)|stable|new(?:ly)?\b)"
)

# Acronyms kept upper case after the case normalisation (both sides get the same treatment).
ACRONYMS = frozenset(
    {
        "ap",
        "pa",
        "ct",
        "mri",
        "picc",
        "ng",
        "og",
        "et",
        "ett",
        "ij",
        "svc",
        "ivc",
        "icd",
        "cabg",
        "copd",
        "chf",
        "ards",
        "ptx",
        "ekg",
        "ecg",
        "tavr",
        "avr",
        "mvr",
        "lv",
        "rv",
        "la",
        "ra",
        "rll",
        "rml",
        "rul",
        "lll",
        "lul",
        "t1",
        "t2",
        "t3",
        "t4",
        "t5",
        "t6",
        "t7",
        "t8",
        "t9",
        "t10",
        "t11",
        "t12",
        "l1",
        "l2",
        "l3",
        "l4",
        "l5",
        "c7",
        "cm",
        "mm",
    }
)
_UNITS_LOWER = frozenset({"cm", "mm"})


@dataclass
class ScrubResult:
    text: str  # what the reader sees
    changes: list[dict[str, str]] = field(default_factory=list)  # {"rule", "removed"}
    flags: list[dict[str, str]] = field(default_factory=list)  # {"rule", "match"}
    # The text after the cuts but before the layout and case normalisation, which split
    # "jsmith@mgh.harvard.edu" at its dots and lower "Mr Smith" to "mr smith" (as "MR
    # imaging" is): the identifier gate reads this as well as `text`.
    as_written: str = ""


def _cut(
    pattern: re.Pattern[str], rule: str, text: str, changes: list[dict[str, str]], repl: str = ""
) -> str:
    def _log(m: re.Match[str]) -> str:
        changes.append({"rule": rule, "removed": m.group(0).strip()})
        return repl

    return pattern.sub(_log, text)


def _normalise_case(text: str) -> str:
    """Sentence case with a fixed acronym list: capitalisation style is a strong author cue."""
    words = re.split(r"(\s+)", text.lower())
    out = []
    for w in words:
        core = w.strip(".,;:()")
        if core in ACRONYMS and core not in _UNITS_LOWER:
            w = w.replace(core, core.upper(), 1)
        out.append(w)
    text = "".join(out)
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _normalise_space(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,;:])", r"\1", text)
    text = re.sub(r"([.;:,])(?=[A-Za-z])", r"\1 ", text)
    text = re.sub(r"\.(\s*\.)+", ".", text)
    text = re.sub(r"^[\s.,;:]+", "", text)
    if text and text[-1] not in ".!?":
        text += "."
    return text


def scrub(text: str) -> ScrubResult:
    """The text a reader sees, with a log of every edit and every cue left in place."""
    changes: list[dict[str, str]] = []
    out = _cut(_SIGNATURE, "signature", text, changes)
    out = _cut(_HEADER, "section_header", out, changes)
    out = _cut(_LIST_MARK, "list_numbering", out, changes, repl=" ")
    out = _cut(_PAREN_COMPARE, "prior_comparison", out, changes)
    out = _cut(_LEADING_COMPARE, "prior_comparison", out, changes, repl=" ")
    out = _cut(_TRAILING_COMPARE, "prior_comparison", out, changes)
    spaced = _normalise_space(out)
    cased = _normalise_case(spaced)
    if spaced != out:
        changes.append({"rule": "whitespace", "removed": "layout normalised"})
    if cased != spaced:
        changes.append({"rule": "case", "removed": "capitalisation normalised to sentence case"})
    flags = [
        {"rule": "prior_reference", "match": m.group(0)} for m in _TEMPORAL_CUE.finditer(cased)
    ]
    # MIMIC's de-identification blanks ("___") mark human-written text; they are not ours to
    # fill in, so they are flagged for the study coordinator.
    flags += [
        {"rule": "deidentification_placeholder", "match": m.group(0)}
        for m in re.finditer(r"_{3,}", cased)
    ]
    return ScrubResult(cased, changes, flags, as_written=out)
