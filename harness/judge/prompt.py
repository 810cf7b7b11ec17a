"""The judge prompt (Figure 8 of the paper) and the parser of its last-line verdict.

The default template is Figure 8 verbatim; its placeholders are the paper's own `[reference]`,
`[report1]` and `[report2]`, filled in one pass so that a report quoting a placeholder cannot
inject text into another slot. The template's SHA-256 is part of every cache key and result.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import UserError

DEFAULT_TEMPLATE_PATH = Path(__file__).parent / "templates" / "figure8.txt"
PLACEHOLDERS = ("reference", "report1", "report2")
_PLACEHOLDER_RE = re.compile(r"\[(reference|report1|report2)\]")

Verdict = Literal["better", "worse", "equal", "unparseable"]

# The three labels Figure 8 asks for, normalised as `_normalise_line` leaves them.
_LABELS: dict[str, Verdict] = {
    "assistant 1 is better than assistant 2": "better",
    "assistant 1 is worse than assistant 2": "worse",
    "assistant 1 is equal to assistant 2": "equal",
}


@dataclass(frozen=True)
class Template:
    text: str
    sha256: str
    source: str  # "figure8" or the path of a user template

    def render(self, reference: str, report1: str, report2: str) -> str:
        values = {"reference": reference, "report1": report1, "report2": report2}
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.text)


def load_template(path: str | Path | None = None) -> Template:
    """The Figure 8 template, or a user's; a template missing a placeholder is rejected."""
    file = Path(path) if path else DEFAULT_TEMPLATE_PATH
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"judge template {file} not found") from exc
    # One trailing newline is an editor artefact, not part of the prompt.
    text = raw[:-1] if raw.endswith("\n") else raw
    missing = [p for p in PLACEHOLDERS if f"[{p}]" not in text]
    if missing:
        raise UserError(
            f"judge template {file} lacks placeholder(s) " + ", ".join(f"[{p}]" for p in missing)
        )
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Template(text=text, sha256=sha, source="figure8" if path is None else str(file))


def _normalise_line(line: str) -> str:
    # Judges wrap the label in markdown or quotes and end it with a full stop; none of that
    # changes the label, so it is stripped before an exact match.
    s = line.strip().strip("*_`#> ").strip()
    s = s.strip("\"'“”‘’").strip()
    s = s.rstrip(".").strip("*_`\"'“”‘’ ").strip()
    return re.sub(r"\s+", " ", s).lower()


def parse_verdict(response: str | None) -> Verdict:
    """The verdict on the LAST non-empty line, as Figure 8 instructs; anything else is
    'unparseable' (never guessed), so it can be counted and reported."""
    if not response:
        return "unparseable"
    lines = [ln for ln in response.splitlines() if ln.strip()]
    if not lines:
        return "unparseable"
    return _LABELS.get(_normalise_line(lines[-1]), "unparseable")
