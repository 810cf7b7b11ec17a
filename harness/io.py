"""Crash-safe file writing: a killed run never leaves a half-written results file.

Three guarantees, all of which a test kills, fills or locks its way through:

- results files are written whole or not at all (`atomic_write_*`: a temporary file, fsynced,
  renamed), with the permissions a plain `open()` would give them under the user's umask;
- the score journal (`AppendLog`) has one writer, each record is fsynced before the next is
  written, and a record torn by kill -9 or a full disk is cut off when the journal is opened
  again, so a resumed run appends to a clean file (docs/runs.md);
- a disk that is full or read-only, or a folder without write permission, ends in one
  `OutputError` line naming the path, never a traceback or a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import OutputError, UserError

log = logging.getLogger(__name__)

# Why a write failed, for the errors a user can fix; anything else is not an output problem.
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or process limit",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class JournalBusy(UserError):
    """Another process holds the journal open for writing (one writer per journal)."""


def output_error(exc: OSError, path: str | Path, advice: str = "") -> OutputError | None:
    """The one-line error for a write that failed for a reason the user can fix, else None."""
    reason = WRITE_FAILURES.get(exc.errno or -1)
    if reason is None:
        return None
    where = exc.filename or path
    return OutputError(f"cannot write {where}: {reason}{'; ' + advice if advice else ''}")


@contextlib.contextmanager
def writing(path: str | Path, advice: str = "") -> Iterator[None]:
    """Turn a full / read-only / forbidden output location into one `OutputError` line."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        err = output_error(exc, path, advice)
        if err is None:
            raise
        raise err from exc


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_dirs(path: str | Path) -> list[Path]:
    """mkdir -p that returns the folders it created (outermost first), so a failed run can
    remove exactly what it made and nothing a user had."""
    path = Path(path)
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove the given folders, innermost first, where they are empty (never anything else)."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            # mkstemp makes the file 0600; give it what open() would, under the user's umask.
            os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    atomic_write_text(
        path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    )


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a killed writer) is dropped, others must parse."""
    rows = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if lineno == len(lines):
                break
            raise ValueError(f"{path}:{lineno}: invalid JSON ({exc})") from exc
    return rows


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The readable records of a journal another process may be writing (read only).

    A journal is a cache of scores: a record that does not parse (torn by a kill, or glued to
    a fragment by an older version) is skipped and its request is simply scored again.
    """
    rows = []
    for line in Path(path).read_bytes().split(b"\n"):
        record = _record(line)
        if isinstance(record, dict) and "key" in record:
            rows.append(record)
    return rows


_UNREADABLE = object()


def _record(line: bytes) -> Any:
    """One line's JSON value; None for a blank line, `_UNREADABLE` when it does not parse."""
    if not line.strip():
        return None
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return _UNREADABLE


class AppendLog:
    """An append-only JSONL journal with one writer, fsynced per record, that survives kill -9
    and a full disk.

    Opening takes an exclusive lock on the file (a second writer gets `JournalBusy`) and repairs
    it: a torn last record (no newline: the writer died mid-write, or the disk filled) is cut
    off, and any unreadable line left by an older version is dropped, so every record appended
    afterwards starts on a line of its own. `repaired` says what was dropped. A write that fails
    (ENOSPC, EROFS, EDQUOT) is undone to the last whole record and raised as `OutputError`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.repaired: str | None = None
        advice = "the scores already journaled are kept; rerun the same command to resume"
        with writing(self.path, advice):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666
            )
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JournalBusy(
                f"{self.path} is being written by another process; one journal "
                "has one writer (wait for the other run, or use another "
                "--output)"
            ) from None
        except OSError:
            pass  # a file system without locks: the run folder's lock (harness.locking) rules
        try:
            with writing(self.path, advice):
                self._size = self._repair()
        except BaseException:
            os.close(self._fd)
            raise
        self._advice = advice

    def _repair(self) -> int:
        """Cut a torn tail and drop unreadable lines; returns the size of the clean file."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        data = os.pread(self._fd, size, 0)
        end = data.rfind(b"\n") + 1  # the end of the last whole record
        lines = data[:end].split(b"\n")[:-1]
        bad = [n for n, line in enumerate(lines, 1) if _record(line) is _UNREADABLE]
        notes = []
        if end < size:
            notes.append(f"cut a torn last record ({size - end} bytes)")
        if bad:
            dropped = set(bad)
            kept = b"".join(
                line + b"\n" for n, line in enumerate(lines, 1) if n not in dropped and line.strip()
            )
            os.ftruncate(self._fd, 0)
            _write_all(self._fd, kept)
            end = len(kept)
            notes.append(
                f"dropped {len(bad)} unreadable line(s) (line {bad[0]}"
                f"{' ...' if len(bad) > 1 else ''}); those requests are scored again"
            )
        elif end < size:
            os.ftruncate(self._fd, end)
        if notes:
            os.fsync(self._fd)
            self.repaired = f"journal {self.path}: {'; '.join(notes)}"
            log.warning("note: %s", self.repaired)
        return end

    def append(self, record: Any) -> None:
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as exc:
            # Undo a partial record (a full disk takes what fits), so nothing torn stays.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
            err = output_error(exc, self.path, self._advice)
            if err is None:
                raise
            raise err from exc
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
