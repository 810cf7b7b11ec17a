"""Where the judge keeps its answers, and its view of one: a `Judgment`.

The storage is the shared request cache and paid-call ledger (`harness.openai_compat.cache`):
keyed by endpoint, every request field and the template hash, shared safely by concurrent
judges. A judgment's verdict is re-parsed from the stored answer at every run, so a parser
change applies to cached judgments too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.judge.prompt import parse_verdict
from harness.openai_compat.cache import CachedResponse, PaidCall
from harness.openai_compat.client import chat_text

CACHE_FILE = "judge_cache.sqlite"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chexbench" / "judge"


@dataclass(frozen=True)
class Judgment:
    key: str
    response: str  # the judge's answer text
    verdict: str  # parsed from `response` by harness.judge.prompt.parse_verdict
    call: PaidCall  # the call that paid for this answer


def judgment_from(entry: CachedResponse) -> Judgment:
    """A cached answer as a judgment (verdict parsed now, never stored)."""
    text = chat_text(entry.body)
    return Judgment(entry.key, text, parse_verdict(text), entry.call)
