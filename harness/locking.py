"""One writer per scoring folder: the lock a run holds while it scores (docs/runs.md).

Two runs with the same scoring identity share one journal folder (`<output>/.journal/<id>/`);
without a lock both score every request. The lock is an exclusive `flock` on `<folder>/lock`,
held from before the model loads until the run ends. The kernel drops it when the holder dies
(kill -9 included), so a lock left by a dead run never blocks the next one. The file records
who holds it (pid, host, start time, command) for the refusal message.

On a file system without `flock` (some network mounts) the file itself is the lock: it is
taken when empty or when its holder is a process of this host that no longer exists (a stale
lock, detected by pid); a holder on another host cannot be checked, and the message says how
to clear it by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.io import writing

NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class FolderLocked(UserError):
    """Another live run holds the lock on this folder."""


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["chexbench", *sys.argv[1:]])[:500],
    }


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        size = os.fstat(fd).st_size
        info = json.loads(os.pread(fd, min(size, 1 << 16), 0).decode("utf-8")) if size else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _alive(info: dict[str, Any]) -> bool:
    """Whether the recorded holder may still be running (True when it cannot be checked)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
        f"{info.get('command')}"
    )


class FolderLock:
    """An exclusive lock on `path` (a file named `lock` in the folder it guards)."""

    def __init__(self, path: str | Path, what: str = "this folder"):
        self.path = Path(path)
        self.what = what
        self._fd = -1
        self.took_stale: dict[str, Any] | None = None  # a dead holder's record, when replaced

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> FolderLock:
        """Take the lock now or raise `FolderLocked` naming the holder (never waits)."""
        for _ in range(5):  # a holder may remove the file between our open and our lock
            with writing(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                self._lock(fd)
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                with writing(self.path):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, json.dumps(_holder()).encode("utf-8"), 0)
                return self
            os.close(fd)
        raise FolderLocked(f"{self.what}: could not take {self.path} (it keeps being replaced)")

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            raise self._refusal(_read_holder(fd)) from None
        except OSError as exc:
            if exc.errno not in NO_LOCKS:
                raise
        # No flock here: the file's record is the lock, stale when its holder is gone.
        info = _read_holder(fd)
        if info and info.get("pid") != os.getpid():
            if _alive(info):
                raise self._refusal(info, by_hand=True)
            self.took_stale = info

    def _refusal(self, info: dict[str, Any] | None, by_hand: bool = False) -> FolderLocked:
        hint = f"; if that run is gone, delete {self.path}" if by_hand else ""
        return FolderLocked(
            f"{self.what} is being written by another chexbench run ({_describe(info)}). Two "
            "runs on one folder would score the same requests twice: wait for it to finish and "
            f"rerun (the finished scores are reused), or use another --output{hint}"
        )

    def release(self) -> None:
        """Clear the holder record and drop the lock (the file stays: see `acquire`)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def probe(path: str | Path, what: str = "this folder") -> None:
    """Raise `FolderLocked` now if `path` is held, without keeping it (a launcher's early
    check before it starts processes that would each find out later)."""
    if Path(path).exists():
        FolderLock(path, what).acquire().release()
