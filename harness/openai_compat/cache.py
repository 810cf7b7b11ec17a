"""A persistent request cache that is also the ledger of every paid call, safe to share.

SQLite (stdlib, no pickle, WAL), three tables:

- `responses`: one answer per request key. The key (`request_key`) is the SHA-256 of the
  normalised endpoint URL, every field of the request body (model, messages, temperature,
  seed, max_tokens, ...) and any context the caller adds (the judge adds its template hash), so
  an answer from one server, model, prompt or setting never answers for another.
- `calls`: the ledger, append-only: one row per paid call (an HTTP 200 with a body), with the
  `usage` the server reported, even when its answer is not the one kept (a call whose usage
  was invalid has NULL tokens and a note).
- `claims`: who is asking for which key right now. Before paying for a key a process claims it
  in one `BEGIN IMMEDIATE` transaction (so two processes cannot both succeed); a key claimed by
  another live process is waited for, not asked again. A claim names its owner's host, pid and
  process start time: a claim whose owner died (same host: pid gone, a zombie, or reused by
  another process) or whose lease expired (other hosts; a stopped process) is taken over. The
  lease is the longest the owner's retry policy can take, so a live owner never loses one.

A path that is not an SQLite file, a folder that cannot be written, or a judge cache of the
earlier schema (a `judgments` table under the same file name, which read as empty would have
every judgment paid for again) is refused with a one-line UserError naming the file.

Storing an answer, booking its call and dropping its claim are one fsynced transaction: a kill
at any instant loses only calls in flight. Claims are committed without fsync (losing one to a
power cut only means it is asked again).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from harness.errors import UserError
from harness.openai_compat.usage import Usage

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS responses (
        key TEXT PRIMARY KEY,
        base_url TEXT NOT NULL,
        model TEXT NOT NULL,
        response TEXT NOT NULL,
        meta TEXT NOT NULL,
        call_id INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        base_url TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        usage_reported INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        latency_s REAL NOT NULL,
        created_at TEXT NOT NULL,
        invocation TEXT NOT NULL,
        note TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS calls_by_key ON calls (key)",
    """CREATE TABLE IF NOT EXISTS claims (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_started REAL NOT NULL,
        claimed_at REAL NOT NULL,
        lease_until REAL NOT NULL
    )""",
)
_OLD_JUDGE_TABLE = "judgments"  # the judge's own cache before it moved here (same file name)
_CALL_COLUMNS = (
    "id",
    "key",
    "base_url",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "usage_reported",
    "attempts",
    "latency_s",
    "created_at",
    "invocation",
    "note",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def request_key(
    base_url: str, body: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> str:
    """SHA-256 of the endpoint, every request field and the caller's context (canonical
    JSON): anything that can change the answer changes the key. `base_url` should be
    normalised (`endpoint.resolve_base_url`) so that spellings of one URL share answers."""
    payload = {"base_url": base_url, "request": body, "context": dict(context or {})}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PaidCall:
    """One ledger row. Tokens are None when the server's usage could not be booked."""

    id: int
    key: str
    base_url: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    usage_reported: bool
    attempts: int
    latency_s: float
    created_at: str
    invocation: str
    note: str | None


@dataclass(frozen=True)
class CachedResponse:
    key: str
    body: dict[str, Any]
    meta: dict[str, Any]
    call: PaidCall  # the call that paid for this answer


@dataclass(frozen=True)
class Owner:
    """A process using the cache: one token per RequestCache, plus what tells whether the
    process is still alive (host, pid, and its start time, which a reused pid does not share)."""

    token: str
    host: str
    pid: int
    started: float

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(uuid.uuid4().hex, socket.gethostname(), pid, psutil.Process(pid).create_time())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True)
class Claim:
    state: Literal["cached", "mine", "busy"]
    cached: CachedResponse | None = None  # state "cached": the answer is already here
    holder: str | None = None  # state "busy": who is asking, for messages


def _alive(
    host: str, pid: int, started: float, lease_until: float, now: float, this_host: str
) -> bool:
    if now >= lease_until:
        return False  # a stopped or hung owner, or one on another host that went away
    if host != this_host:
        return True  # cannot see other machines' processes: the lease decides
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class RequestCache:
    """The cache file at `path`. Use one instance from one thread at a time (callers run it on
    a single worker thread); several processes may share the file."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.owner = Owner.this_process()
        self._db: sqlite3.Connection | None = None
        try:
            self._open()
        except UserError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            # Not an SQLite file, an unwritable folder, a read-only file: the user's choice
            # of path, so one line naming it, never a traceback.
            self.close()
            what = (
                "not a chexbench request cache"
                if isinstance(exc, sqlite3.DatabaseError)
                and not isinstance(exc, sqlite3.OperationalError)
                else "cannot open the request cache"
            )
            raise UserError(f"{self.path}: {what} ({exc}); pass another --cache") from None

    def _open(self) -> None:
        if self.read_only:
            # A dry run must not create anything; a missing cache is simply empty.
            if not self.path.is_file():
                return
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            if not self._has_tables():
                self._db.close()
                self._db = None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE), the busy timeout
        # makes a process wait while another one writes.
        self._db = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._has_tables()  # refuses an older judge cache before anything is added to it
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._transaction(durable=True):
            for statement in _SCHEMA:
                self._db.execute(statement)

    def _has_tables(self) -> bool:
        """Whether the file holds this cache's tables. A judge cache of the earlier schema
        (one `judgments` table, same file name) is refused: read as empty, every judgment in
        it would be paid for again."""
        assert self._db is not None
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        if _OLD_JUDGE_TABLE in names and "responses" not in names:
            raise UserError(
                f"{self.path}: a judge cache of an earlier chexbench (a '{_OLD_JUDGE_TABLE}' "
                "table) that this version cannot read; move it aside (or pass another --cache) "
                "and rerun"
            )
        return {"responses", "calls", "claims"} <= names

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[sqlite3.Connection]:
        if self._db is None or self.read_only:
            raise RuntimeError(f"request cache {self.path} is open read-only")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, CachedResponse]:
        """The cached answers among `keys`, each with the call that paid for it."""
        if self._db is None or not keys:
            return {}
        found: dict[str, CachedResponse] = {}
        cols = ", ".join(f"c.{c}" for c in _CALL_COLUMNS)
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT r.key, r.response, r.meta, {cols} FROM responses r "
                f"JOIN calls c ON c.id = r.call_id WHERE r.key IN ({marks})",
                chunk,
            )
            for key, response, meta, *call in cur:
                found[key] = CachedResponse(
                    key, json.loads(response), json.loads(meta), _paid_call(call)
                )
        return found

    def calls_for(self, keys: Sequence[str]) -> list[PaidCall]:
        """Every ledger row of `keys`, in the order they were paid."""
        if self._db is None or not keys:
            return []
        rows: list[PaidCall] = []
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT {', '.join(_CALL_COLUMNS)} FROM calls WHERE key IN ({marks})", chunk
            )
            rows.extend(_paid_call(r) for r in cur)
        return sorted(rows, key=lambda c: c.id)

    # -- claiming ---------------------------------------------------------------------------
    def claim(self, key: str, lease_s: float) -> Claim:
        """Take `key` for this owner unless it is answered ("cached") or a live owner holds it
        ("busy"). A dead owner's or an expired claim is taken over."""
        return self.claim_many([key], lease_s)[key]

    def claim_many(self, keys: Sequence[str], lease_s: float) -> dict[str, Claim]:
        """`claim` for several keys in one transaction (one lock, one commit)."""
        now = time.time()
        o = self.owner
        out: dict[str, Claim] = {}
        with self._transaction(durable=False) as db:
            cached = self.get_many(keys)
            for key in keys:
                if key in cached:
                    out[key] = Claim("cached", cached=cached[key])
                    continue
                row = db.execute(
                    "SELECT owner, host, pid, pid_started, lease_until FROM claims WHERE key = ?",
                    (key,),
                ).fetchone()
                if (
                    row is not None
                    and row[0] != o.token
                    and _alive(row[1], row[2], row[3], row[4], now, o.host)
                ):
                    out[key] = Claim("busy", holder=f"pid {row[2]} on {row[1]}")
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, o.token, o.host, o.pid, o.started, now, now + lease_s),
                )
                out[key] = Claim("mine")
        return out

    def release(self, key: str) -> None:
        """Drop this owner's claim on `key` (the call failed: another process may try)."""
        with self._transaction(durable=False) as db:
            db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner.token))

    def release_all(self) -> None:
        """Drop every claim this owner still holds (at the end of a run, however it ended)."""
        if self._db is None or self.read_only:
            return
        with self._transaction(durable=False) as db:
            db.execute("DELETE FROM claims WHERE owner = ?", (self.owner.token,))

    # -- writing ----------------------------------------------------------------------------
    def store(
        self,
        key: str,
        *,
        base_url: str,
        model: str,
        body: Mapping[str, Any],
        usage: Usage,
        attempts: int,
        latency_s: float,
        invocation: str,
        meta: Mapping[str, Any] | None = None,
    ) -> CachedResponse:
        """Book the paid call, keep its answer (unless one is already kept) and drop the
        claim: one fsynced transaction. Returns the answer now cached for `key`."""
        text = json.dumps(body, ensure_ascii=False)
        meta = dict(meta or {})
        with self._transaction(durable=True) as db:
            call = self._insert_call(
                db, key, base_url, model, usage, attempts, latency_s, invocation, None
            )
            kept = db.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    base_url,
                    model,
                    text,
                    json.dumps(meta, ensure_ascii=False),
                    call.id,
                    call.created_at,
                ),
            ).rowcount
            db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner.token))
            if not kept:  # another process paid for it too (a lost claim): keep the first
                return self.get_many([key])[key]
        return CachedResponse(key, dict(body), meta, call)

    def record_call(
        self,
        key: str,
        *,
        base_url: str,
        model: str,
        usage: Usage | None,
        attempts: int,
        latency_s: float,
        invocation: str,
        note: str | None = None,
    ) -> PaidCall:
        """Book a paid call whose answer is not kept (e.g. its usage was invalid: `usage`
        None books no tokens) and drop the claim."""
        with self._transaction(durable=True) as db:
            call = self._insert_call(
                db, key, base_url, model, usage, attempts, latency_s, invocation, note
            )
            db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner.token))
            return call

    @staticmethod
    def _insert_call(
        db: sqlite3.Connection,
        key: str,
        base_url: str,
        model: str,
        usage: Usage | None,
        attempts: int,
        latency_s: float,
        invocation: str,
        note: str | None,
    ) -> PaidCall:
        created = now_iso()
        values = (
            key,
            base_url,
            model,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            int(usage.reported) if usage else 1,
            attempts,
            round(latency_s, 4),
            created,
            invocation,
            note,
        )
        cur = db.execute(
            f"INSERT INTO calls ({', '.join(_CALL_COLUMNS[1:])}) "
            f"VALUES ({','.join('?' * len(values))})",
            values,
        )
        return _paid_call((cur.lastrowid, *values))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _paid_call(row: Sequence[Any]) -> PaidCall:
    values = list(row)
    values[6] = bool(values[6])
    return PaidCall(*values)
