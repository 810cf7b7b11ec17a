"""The persistent judgment cache, which is also the per-call cost ledger.

SQLite (stdlib, no pickle) with one committed, fsynced transaction per judgment: a run killed
at any instant keeps every judgment that came back, and a rerun asks only for the rest. A row
is written only for a call that returned (HTTP 200 with `usage`), so the rows are exactly the
calls that were paid for.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CACHE_FILE = "judge_cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    judge_model TEXT NOT NULL,
    template_sha256 TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    response TEXT NOT NULL,
    verdict TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at TEXT NOT NULL,
    invocation TEXT NOT NULL
)
"""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chexbench" / "judge"


def judgment_key(judge_model: str, template_sha256: str, seed: int, max_tokens: int,
                 reference: str, report1: str, report2: str) -> str:
    """Everything that can change the judge's answer; the order of the reports matters."""
    payload = {
        "judge_model": judge_model, "template_sha256": template_sha256, "temperature": 0,
        "seed": seed, "max_tokens": max_tokens,
        "reference": reference, "report1": report1, "report2": report2,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Judgment:
    key: str
    judge_model: str
    template_sha256: str
    prompt_sha256: str
    response: str
    verdict: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float
    created_at: str
    invocation: str


class JudgmentCache:
    def __init__(self, directory: str | Path, read_only: bool = False):
        self.path = Path(directory) / CACHE_FILE
        if read_only:
            # A dry run must not create anything; a missing cache is simply empty.
            self._db = (sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
                        if self.path.is_file() else None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One writer thread commits while the event loop keeps requests in flight.
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Judgment]:
        if self._db is None or not keys:
            return {}
        found: dict[str, Judgment] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT {', '.join(Judgment.__dataclass_fields__)} FROM judgments "
                f"WHERE key IN ({marks})", chunk)
            for row in cur:
                found[row[0]] = Judgment(*row)
        return found

    def put(self, j: Judgment) -> None:
        assert self._db is not None, "cache opened read-only"
        cols = list(Judgment.__dataclass_fields__)
        with self._db:  # one transaction, committed (and fsynced) before returning
            self._db.execute(
                f"INSERT OR REPLACE INTO judgments ({', '.join(cols)}) "
                f"VALUES ({','.join('?' * len(cols))})",
                [getattr(j, c) for c in cols])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
