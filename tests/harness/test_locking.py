"""One writer per scoring folder (harness.locking): a live holder is named in the refusal, a
dead one never blocks, and where the file system has no locks a stale holder is found by pid."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

import harness.locking as locking
from harness.locking import FolderLock, FolderLocked

HOLD = """
import sys, time
from harness.locking import FolderLock
FolderLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_holder_is_named_and_a_killed_one_blocks_nothing(tmp_path):
    path = tmp_path / "scores" / "lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderLocked) as exc:
            FolderLock(path, "scoring folder X").acquire()
        message = str(exc.value)
        assert message.startswith("scoring folder X is being written by another chexbench run")
        assert f"pid {holder.pid}" in message and "score the same requests twice" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(path) as lock:  # the kernel dropped the dead holder's lock
        assert lock.held
    assert path.read_bytes() == b""  # released: no holder recorded


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    path = tmp_path / "lock"
    with FolderLock(path):
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()}"):
            FolderLock(path).acquire()
    FolderLock(path).acquire().release()


def test_a_removed_lock_file_is_not_a_second_lock(tmp_path):
    """A failed run removes the lock file it made; a run that opened the old file meanwhile
    must not count its lock on that unlinked file as the folder's."""
    path = tmp_path / "lock"
    first = FolderLock(path).acquire()
    path.unlink()
    second = FolderLock(path).acquire()  # a new file: the only lock on the path now
    with pytest.raises(FolderLocked):
        FolderLock(path).acquire()
    second.release()
    first.release()


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without flock (some network mounts): flock fails with ENOLCK."""

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locking.fcntl, "flock", refuse)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_without_flock_a_stale_lock_is_taken_over_by_pid(tmp_path, no_flock):
    path = tmp_path / "lock"
    stale = {
        "pid": _dead_pid(),
        "host": socket.gethostname(),
        "started": "then",
        "command": "chexbench run",
    }
    path.write_text(json.dumps(stale))
    lock = FolderLock(path).acquire()
    assert lock.took_stale == stale
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()

    alive = {**stale, "pid": os.getppid()}
    path.write_text(json.dumps(alive))
    with pytest.raises(FolderLocked, match=f"pid {os.getppid()}.*if that run is gone, delete"):
        FolderLock(path).acquire()
    elsewhere = {**stale, "host": "another-host"}  # cannot be checked: refused
    path.write_text(json.dumps(elsewhere))
    with pytest.raises(FolderLocked, match="another-host"):
        FolderLock(path).acquire()


def test_probe_refuses_a_held_folder_and_keeps_no_lock(tmp_path):
    path = tmp_path / "lock"
    locking.probe(path)  # no file yet: nothing to probe, nothing made
    assert not path.exists()
    with FolderLock(path), pytest.raises(FolderLocked):
        locking.probe(path)
    locking.probe(path)
    FolderLock(path).acquire().release()  # the probe left it free
