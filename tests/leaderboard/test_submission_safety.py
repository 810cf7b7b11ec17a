"""Submissions at the edges: concurrent identical uploads, reserved member names, corrupt
compressed streams, hostile JSON, unprintable names, claims the samples contradict."""

from __future__ import annotations

import io
import json
import struct
import threading
import zipfile

import pytest
from helpers.leaderboard import VIEW_MIMIC, bundle, sample_rows, valid_bundle_members

from harness.cli import main as cli
from leaderboard import submission
from leaderboard.loader import PENDING, load_folder


def _submit_cli(tmp_path, members: dict[str, bytes], capsys) -> tuple[int, str]:
    path = bundle(tmp_path / "b.zip", members)
    code = cli(["submit", str(path), "--results", str(tmp_path / "results")])
    return code, capsys.readouterr().err


def _nothing_stored(tmp_path) -> bool:
    return not submission.list_submissions(tmp_path / "results")


# ---------------------------------------------------------------- races


def test_identical_submissions_at_once_give_one_submission_and_clean_refusals(tmp_path):
    """Before: the losers of the race died with an ENOTEMPTY traceback (9 of 23 tries)."""
    results = tmp_path / "results"
    data = bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes()
    rounds, racers = 6, 6
    for attempt in range(rounds):
        root = results / str(attempt)
        start = threading.Barrier(racers)
        outcomes: list[object] = []

        def race(root=root, start=start, outcomes=outcomes):
            start.wait()
            try:
                outcomes.append(submission.submit_bundle(data, root, "b.zip"))
            except submission.BundleError as exc:
                outcomes.append(exc)
            except BaseException as exc:  # noqa: BLE001  (any other failure is the bug)
                outcomes.append(("crash", exc))

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [o for o in outcomes if isinstance(o, submission.Submission)]
        refused = [o for o in outcomes if isinstance(o, submission.BundleError)]
        assert len(winners) == 1 and len(refused) == racers - 1, outcomes
        assert all("duplicate" in str(e) for e in refused)
        folders = [p.name for p in (root / "submissions").iterdir()]
        assert sorted(folders) == sorted([winners[0].id, submission.LOCK_FILE])


def _submit_in_process(data: bytes, root: str, start, queue) -> None:
    start.wait()
    try:
        queue.put(("ok", submission.submit_bundle(data, root, "b.zip").id))
    except submission.BundleError as exc:
        queue.put(("refused", str(exc)))
    except BaseException as exc:  # noqa: BLE001
        queue.put(("crash", repr(exc)))


def test_identical_submissions_from_separate_processes(tmp_path):
    """The lock is a file lock: it holds between processes (two `chexbench submit`s, or the
    page and the CLI), not only threads."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    data = bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes()
    start, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_submit_in_process, args=(data, str(tmp_path / "results"), start, queue))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(kind for kind, _ in outcomes) == ["ok", "refused", "refused", "refused"]
    assert len(submission.list_submissions(tmp_path / "results")) == 1


def test_review_and_submission_share_the_lock(tmp_path, monkeypatch):
    results = tmp_path / "results"
    sub = submission.submit_bundle(
        bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes(), results
    )
    from filelock import FileLock

    with FileLock(results / "submissions" / submission.LOCK_FILE):
        monkeypatch.setattr(submission, "LOCK_TIMEOUT_S", 0.2)
        with pytest.raises(submission.BundleError, match="held the lock"):
            submission.set_status(results, sub.id, "accepted")
    assert submission.list_submissions(results)[0]["status"] == "pending"


# ---------------------------------------------------------------- reserved names


@pytest.mark.parametrize("reserved", ["status.json", "STATUS.JSON", "official_data.json"])
def test_a_member_named_like_the_folders_own_files_is_refused(tmp_path, capsys, reserved):
    members = valid_bundle_members()
    results_json = next(v for k, v in members.items() if k.endswith(".json"))
    members = {reserved: results_json, **{k: v for k, v in members.items() if k.endswith(".jsonl")}}
    code, err = _submit_cli(tmp_path, members, capsys)
    assert code == 2 and "reserved name" in err and reserved in err
    assert _nothing_stored(tmp_path)


# ---------------------------------------------------------------- corrupt streams


def _corrupt(method: int, offset: int) -> bytes:
    """A one-member zip whose compressed stream is overwritten with 0xFF at `offset` (the CRC
    and sizes in the headers are left as they were)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr("r.json", b'{"a": 1}' * 2000)
    data = bytearray(buffer.getvalue())
    name_len, extra_len = struct.unpack("<HH", data[26:30])
    start = 30 + name_len + extra_len + offset
    data[start : start + 8] = b"\xff" * 8
    return bytes(data)


@pytest.mark.parametrize(
    "method, offset",
    [
        (zipfile.ZIP_DEFLATED, 0),  # zlib.error: invalid block type
        (zipfile.ZIP_LZMA, 9),  # LZMAError: corrupt input data
        (zipfile.ZIP_BZIP2, 0),  # OSError: invalid data stream
    ],
    ids=["deflate", "lzma", "bzip2"],
)
def test_a_corrupt_compressed_stream_is_one_line(tmp_path, capsys, method, offset):
    path = tmp_path / "b.zip"
    path.write_bytes(_corrupt(method, offset))
    assert cli(["submit", str(path), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "corrupt compressed data" in err and len(err.strip().splitlines()) == 1
    assert _nothing_stored(tmp_path)


# ---------------------------------------------------------------- hostile JSON


@pytest.mark.parametrize(
    "member, content, reason",
    [
        ("r.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("r.json", b'{"a":' * 80 + b"1" + b"}" * 80, "more than 64 levels"),
        ("s.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        ("r.json", b'{"run_id": NaN}', "NaN is not JSON"),
    ],
)
def test_hostile_json_is_one_line(tmp_path, capsys, member, content, reason):
    members = valid_bundle_members()
    members[member] = content
    code, err = _submit_cli(tmp_path, members, capsys)
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1
    assert _nothing_stored(tmp_path)


# ---------------------------------------------------------------- names and claims


@pytest.mark.parametrize(
    "name, reason",
    [
        ("Red\x1b[31m", "non-printable character \\x1b"),
        ("two\nlines", "non-printable character \\x0a"),
        ("right-to-left\u202eevil", "non-printable character \\u202e"),
        ("x" * 200, "at most 120"),
        ("   ", "is empty"),
    ],
)
def test_names_must_be_printable_text(tmp_path, capsys, name, reason):
    code, err = _submit_cli(tmp_path, valid_bundle_members(model=name), capsys)
    assert code == 2 and "model.name" in err and reason in err
    assert "\x1b" not in err  # the error line itself shows the escape, never sends it
    assert _nothing_stored(tmp_path)


def test_markup_in_a_name_is_text_and_may_be_submitted(tmp_path, capsys):
    """Printable names are allowed whatever they contain: every page escapes them."""
    name = '<h1 style="color:red">Evil</h1> [x](https://example.org) [/bold]'
    code, _ = _submit_cli(tmp_path, valid_bundle_members(model=name), capsys)
    assert code == 0
    [entry] = load_folder(tmp_path / "results").entries
    assert entry.results.model.name == name and entry.provenance == PENDING


def test_claims_must_match_the_samples(tmp_path, capsys):
    members = valid_bundle_members()
    key = "my-run.json"
    obj = json.loads(members[key])
    obj["subtasks"][VIEW_MIMIC]["n"] = 400
    code, err = _submit_cli(tmp_path, {**members, key: json.dumps(obj).encode()}, capsys)
    assert code == 2 and "claims n=400 but my-run.samples.jsonl has 5 rows" in err
    rows = sample_rows(VIEW_MIMIC, 5, 3, None)
    observed = sum(r["correct"] for r in rows) / 5
    obj = json.loads(members[key])
    obj["subtasks"][VIEW_MIMIC]["metrics"]["acc_chexbench"] = {"value": 1.0, "ci": [0.9, 1.0]}
    code, err = _submit_cli(tmp_path, {**members, key: json.dumps(obj).encode()}, capsys)
    assert code == 2 and f"claims acc_chexbench=1 but its samples give {observed:.6g}" in err
    no_samples = {key: json.dumps({**json.loads(members[key]), "samples_file": None}).encode()}
    code, err = _submit_cli(tmp_path, no_samples, capsys)
    assert code == 2 and "a run needs its samples JSONL" in err
    assert _nothing_stored(tmp_path)


def test_submissions_list_prints_stored_text_as_text(tmp_path, capsys):
    """A status file written before names were checked (or by hand) still prints safely."""
    results = tmp_path / "results"
    sub = submission.submit_bundle(
        bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes(), results
    )
    status_path = sub.folder / "status.json"
    status = json.loads(status_path.read_text())
    status["results"][0]["model"] = "Red\x1b[31m\x1b]8;;https://example.org\x1b\\"
    status_path.write_text(json.dumps(status))
    assert cli(["submissions", "list", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "Red\\x1b[31m" in out
    assert "data_sha256" in out  # what the run card says about the data, for the reviewer


@pytest.mark.parametrize(
    "edit",
    [
        {"status": None},
        {"status": 3},
        {"results": "MyModel"},
        {"results": {"model": "MyModel"}},
    ],
    ids=["status-null", "status-number", "results-string", "results-object"],
)
def test_a_status_file_without_a_status_or_results_list_is_listed_as_unreadable(
    tmp_path, capsys, edit
):
    """Before: `chexbench submissions list` crashed formatting a None status (TypeError)."""
    results = tmp_path / "results"
    sub = submission.submit_bundle(
        bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes(), results
    )
    status_path = sub.folder / "status.json"
    status = json.loads(status_path.read_text())
    status.update(edit)
    status_path.write_text(json.dumps(status))
    assert submission.list_submissions(results) == [
        {"id": sub.id, "status": "unreadable status file"}
    ]
    assert cli(["submissions", "list", "--results", str(results)]) == 0
    assert f"{sub.id}  unreadable status file" in capsys.readouterr().out
