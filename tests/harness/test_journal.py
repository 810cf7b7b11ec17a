"""The score journal and the results writer against torn records, a full disk, a second writer,
a read-only folder and the user's umask (harness.io)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.filesystem import read_only, writable

from harness.errors import OutputError
from harness.io import AppendLog, JournalBusy, atomic_write_json, read_journal, read_jsonl


def _records(n: int, start: int = 0) -> list[dict]:
    return [
        {"key": f"k{i}", "value": {"ll": -float(i), "text": "é" * i}}
        for i in range(start, start + n)
    ]


def _write(path: Path, records: list[dict]) -> None:
    with AppendLog(path) as log:
        for record in records:
            log.append(record)


def test_a_torn_last_record_is_cut_when_the_journal_is_opened_again(tmp_path):
    path = tmp_path / "journal.jsonl"
    _write(path, _records(3))
    whole = path.read_bytes()
    torn = json.dumps(_records(1, 3)[0]).encode()[:17]  # a write cut short by kill -9
    path.write_bytes(whole + torn)

    log = AppendLog(path)
    assert log.repaired is not None and f"({len(torn)} bytes)" in log.repaired
    assert path.read_bytes() == whole
    log.append(_records(1, 3)[0])  # starts on a line of its own, not glued to the fragment
    log.close()
    assert read_jsonl(path) == _records(4)
    again = AppendLog(path)  # the second reopening finds nothing to repair
    assert again.repaired is None
    again.close()


def test_an_unreadable_middle_line_from_an_older_version_is_dropped_and_rescored(tmp_path):
    # The old writer appended the next record to a torn fragment: one unreadable line.
    path = tmp_path / "journal.jsonl"
    lines = [json.dumps(r) for r in _records(4)]
    path.write_text(lines[0] + "\n" + lines[1][:20] + lines[2] + "\n" + lines[3] + "\n")
    with pytest.raises(ValueError, match="journal.jsonl:2"):
        read_jsonl(path)
    log = AppendLog(path)
    assert "dropped 1 unreadable line(s) (line 2)" in log.repaired
    log.close()
    assert read_jsonl(path) == [_records(4)[0], _records(4)[3]]


def test_one_writer_per_journal(tmp_path):
    path = tmp_path / "journal.jsonl"
    first = AppendLog(path)
    with pytest.raises(JournalBusy, match="being written by another process"):
        AppendLog(path)
    first.close()
    AppendLog(path).close()  # free again once the writer is gone


def test_a_reader_skips_what_a_writer_has_not_finished(tmp_path):
    path = tmp_path / "journal.rank1.jsonl"
    lines = [json.dumps(r) for r in _records(3)]
    path.write_text(lines[0] + "\n" + "garbage\n" + lines[1] + "\n" + lines[2][:9])
    assert read_journal(path) == [_records(3)[0], _records(3)[1]]


FILL = """
import json, resource, sys
from harness.errors import OutputError
from harness.io import AppendLog
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # the disk is "full" here
log = AppendLog(sys.argv[1])
try:
    for i in range(1000):
        log.append({{"key": f"k{{i}}", "value": "x" * 37}})
except OutputError as exc:
    print(i, exc)
"""


def test_a_full_disk_mid_record_leaves_only_whole_records(tmp_path):
    """A real short write: the kernel stops the file at RLIMIT_FSIZE bytes, inside a record
    (as a full disk stops it at a block boundary)."""
    path = tmp_path / "journal.jsonl"
    limit = 1000
    proc = subprocess.run(
        [sys.executable, "-c", FILL.format(limit=limit), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    failed_at, message = proc.stdout.split(" ", 1)
    assert f"cannot write {path}" in message and "rerun the same command to resume" in message
    rows = read_jsonl(path)
    assert len(rows) == int(failed_at) > 0
    data = path.read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    assert len(data) + len(json.dumps(rows[0]).encode()) + 1 > limit  # it did fill up
    _write(path, _records(1))  # and the next run appends to clean lines
    assert len(read_jsonl(path)) == len(rows) + 1


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_results_files_get_the_users_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_json(tmp_path / "results.json", {"a": 1})
        _write(tmp_path / "journal.jsonl", _records(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "journal.jsonl").stat().st_mode) == mode


def test_a_read_only_folder_is_one_line_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if not read_only(folder):
        pytest.skip("cannot make a folder read-only here")
    try:
        with pytest.raises(OutputError, match=f"cannot write .*{folder.name}"):
            atomic_write_json(folder / "results.json", {"a": 1})
        with pytest.raises(OutputError, match="cannot write"):
            AppendLog(folder / ".journal" / "journal.jsonl")
    finally:
        writable(folder)
    assert list(folder.iterdir()) == []
