"""Text from results files and uploads, made safe to print.

A model name, run id or bundle member name is whoever-wrote-the-file's text. Printed raw to a
terminal, an ANSI escape in it recolours or rewrites the screen; a bidi override reorders
what the reader sees. `printable` shows such characters as visible escapes instead, and
`display_name_problem` is the rule a submission's names must meet before they are stored.
Markup escaping (Rich, HTML, Markdown) belongs to each renderer and is done there.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 120  # a display name, run id or task key; longer ones break every table


def _unsafe(ch: str) -> bool:
    # Cc: C0/C1 controls (ESC, BEL, CR, ...); Cf: format characters (bidi overrides,
    # zero-width joiners); Zl/Zp: line and paragraph separators; Cs/Co/Cn: surrogates,
    # private-use and unassigned code points.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def printable(text: object) -> str:
    """`text` with every control, format or unassigned character replaced by its escape
    (`\\x1b`, `\\u202e`): what is printed is what the file says, not what it does."""
    out = []
    for ch in str(text):
        if _unsafe(ch):
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
            )
        else:
            out.append(ch)
    return "".join(out)


def display_name_problem(text: str, limit: int = MAX_NAME_CHARS) -> str | None:
    """Why `text` cannot be a name shown on the leaderboard, or None when it can: names are
    non-empty printable text (spaces allowed, no controls, no line breaks) of at most `limit`
    characters."""
    if not text.strip():
        return "is empty"
    if len(text) > limit:
        return f"is {len(text)} characters long; at most {limit}"
    bad = next((ch for ch in text if _unsafe(ch) or (ch.isspace() and ch != " ")), None)
    if bad is not None:
        return f"contains the non-printable character {printable(bad)!s} (U+{ord(bad):04X})"
    return None
