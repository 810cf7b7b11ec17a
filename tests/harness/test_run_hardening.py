"""`chexbench run` when things go wrong around it: a torn journal, a full disk, a second run on
the same folder, data that lacks some tasks, an unwritable output folder, a model that fails to
load, bad numbers on the command line. Each ends in results equal to an uninterrupted run, or
in one error line with nothing left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.filesystem import read_only, writable

from harness.cli import main
from harness.io import read_jsonl

TASKS = "chexbench_view_classification_mimic_cxr,chexbench_findings_summarization"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from harness.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(
        out, n_per_pair=4, seed=5, image_size=32, n_text=3, n_fairness=0
    ).data_json


def _cmd(data: Path, output: Path, *extra: str, model: str = "chexagent") -> list[str]:
    return [
        "run",
        "--model",
        model,
        "--model-args",
        "pretrained=smoke",
        "--data",
        str(data),
        "--tasks",
        TASKS,
        "--output",
        str(output),
        "--batch-size",
        "2",
        "--max-gen-toks",
        "4",
        "--text-metrics",
        "rouge",
        "--bootstrap-samples",
        "50",
        "--no-progress",
        *extra,
    ]


def _run_dirs(output: Path) -> list[Path]:
    return [p for p in output.iterdir() if p.is_dir() and p.name != ".journal"]


def _journal(output: Path) -> Path:
    (scores,) = (output / ".journal").iterdir()
    return scores / "journal.jsonl"


def _results(output: Path) -> tuple[dict, str]:
    (run_dir,) = _run_dirs(output)
    return (
        json.loads((run_dir / "results.json").read_text()),
        (run_dir / "samples.jsonl").read_text(),
    )


def _assert_same_numbers(output: Path, reference: Path) -> dict:
    got, got_rows = _results(output)
    want, want_rows = _results(reference)
    assert got["subtasks"] == want["subtasks"] and got["groups"] == want["groups"]
    assert got_rows == want_rows
    return got


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    return line


@pytest.fixture(scope="module")
def reference(phantom, tmp_path_factory) -> Path:
    """An uninterrupted run: its output folder."""
    out = tmp_path_factory.mktemp("reference")
    assert main(_cmd(phantom, out)) == 0
    return out


def test_a_journal_torn_mid_record_resumes_twice_to_the_uninterrupted_results(
    phantom, reference, tmp_path, caplog
):
    lines = _journal(reference).read_bytes().splitlines(keepends=True)
    total, kept = len(lines), len(lines) // 2
    out = tmp_path / "torn"
    journal = out / ".journal" / _journal(reference).parent.name / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    # What kill -9 (or a full disk) leaves: whole records, then part of the next one.
    journal.write_bytes(b"".join(lines[:kept]) + lines[kept][: len(lines[kept]) // 2])
    for attempt, resumed in ((1, kept), (2, total)):
        caplog.clear()
        assert main(_cmd(phantom, out)) == 0, attempt
        # The notes go to stderr through logging (pytest's caplog holds them here).
        assert ("cut a torn last record" in caplog.text) == (attempt == 1), caplog.text
        keys = [row["key"] for row in read_jsonl(journal)]
        assert len(keys) == len(set(keys)) == total, "a request was scored twice or lost"
        extra = _assert_same_numbers(out, reference)["run_card"]["extra"]
        assert extra["requests_resumed"] == resumed
        assert extra["engine"]["requests_scored"] == total - resumed


FULL_DISK = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({0}, {0})); "
    "from harness.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.slow  # a second interpreter loads torch and lm-eval (~20 s)
def test_a_full_disk_ends_in_one_line_with_nothing_torn_and_the_rerun_resumes(
    phantom, reference, tmp_path
):
    """The kernel cuts the journal mid-record at RLIMIT_FSIZE bytes (as ENOSPC does at a block
    boundary); the run stops in one line, and the same command later finishes the job."""
    out = tmp_path / "full"
    limit = _journal(reference).stat().st_size // 2
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK.format(limit), *_cmd(phantom, out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _error_line(proc.stderr)
    journal = _journal(out)
    assert f"cannot write {journal}" in line and "rerun the same command to resume" in line
    data = journal.read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    journaled = len(read_jsonl(journal))  # every line whole
    assert journaled > 0 and _run_dirs(out) == []
    assert main(_cmd(phantom, out)) == 0
    extra = _assert_same_numbers(out, reference)["run_card"]["extra"]
    assert extra["requests_resumed"] == journaled


# A plug-in CheXagent that waits at its first decoder pass until the test opens the gate, so
# a second run starts while the first holds its folder, whatever the machine's speed.
GATED = """
import os, time
from pathlib import Path
from model_adapters.chexagent import CheXagentAdapter

class GatedCheXagent(CheXagentAdapter):
    name = "gated_chexagent"

    def lm_forward(self, *args, **kwargs):
        gate = Path(os.environ["GATE"])
        if not gate.exists():
            Path(str(gate) + ".waiting").touch()
            deadline = time.monotonic() + 300
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().lm_forward(*args, **kwargs)
"""


@pytest.mark.slow  # a second interpreter loads torch and lm-eval (~20 s)
def test_a_second_run_on_the_same_folder_is_refused_and_nothing_is_scored_twice(
    phantom, reference, tmp_path, capsys
):
    plugin = tmp_path / "gated.py"
    plugin.write_text(GATED)
    gate = tmp_path / "gate"
    out = tmp_path / "shared"
    cmd = [*_cmd(phantom, out, "--adapter-file", str(plugin), model="gated_chexagent")]
    first = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *cmd],
        env={**os.environ, "GATE": str(gate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not Path(f"{gate}.waiting").exists():
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        capsys.readouterr()
        assert main(cmd) == 2  # the first run is mid-scoring, holding the folder
        line = _error_line(capsys.readouterr().err)
        assert "is being written by another chexbench run" in line
        assert f"pid {first.pid}" in line
    finally:
        gate.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    keys = [row["key"] for row in read_jsonl(_journal(out))]
    total = len(read_jsonl(_journal(reference)))
    assert len(keys) == len(set(keys)) == total
    extra = _assert_same_numbers(out, reference)["run_card"]["extra"]
    assert extra["engine"]["requests_scored"] == total and extra["requests_resumed"] == 0


def test_data_without_some_tasks_runs_the_rest_and_says_so(phantom, tmp_path, capsys, caplog):
    data = json.loads(phantom.read_text())
    for key in ("Visual Question Answering", "Findings Summarization"):
        del data[key]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(data))
    out = tmp_path / "out"
    cmd = [
        "run",
        "--model",
        "chexagent",
        "--model-args",
        "pretrained=smoke",
        "--data",
        str(partial),
        "--image-root",
        str(phantom.parent),
        "--output",
        str(out),
        "--limit",
        "1",
        "--max-gen-toks",
        "2",
        "--text-metrics",
        "rouge",
        "--bootstrap-samples",
        "20",
        "--no-progress",
    ]
    assert main(cmd) == 0
    absent = [
        "chexbench_visual_question_answering_rad_restruct",
        "chexbench_visual_question_answering_slake",
        "chexbench_findings_summarization",
    ]
    (note,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note:")]
    assert f"has no items for {', '.join(absent)}; running the 13 present" in note
    results, _ = _results(out)
    coverage = results["run_card"]["extra"]["coverage"]
    assert coverage["partial"] is True and coverage["absent_subtasks"] == absent
    assert len(coverage["requested_subtasks"]) == 16
    assert sorted(results["subtasks"]) == sorted(set(coverage["requested_subtasks"]) - set(absent))
    # A task named on its own must be there.
    assert main([*cmd[:-1], "--tasks", "chexbench_visual_question_answering_slake"]) == 2
    assert "chexbench_visual_question_answering_slake has no items" in _error_line(
        capsys.readouterr().err
    )


def test_an_unwritable_output_folder_is_one_line_before_the_model_loads(
    phantom, tmp_path, capsys, monkeypatch
):
    import model_adapters.registry

    def tripwire(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(model_adapters.registry, "build_lm", tripwire)
    folder = tmp_path / "ro"
    folder.mkdir()
    if not read_only(folder):
        pytest.skip("cannot make a folder read-only here")
    try:
        assert main(_cmd(phantom, folder / "runs")) == 2
        line = _error_line(capsys.readouterr().err)
        assert f"cannot write {folder / 'runs'}" in line
    finally:
        writable(folder)
    assert list(folder.iterdir()) == []


BROKEN = """
from harness.errors import WeightsMissing
from model_adapters.chexagent import CheXagentAdapter

class BrokenCheXagent(CheXagentAdapter):
    name = "broken_chexagent"

    def __init__(self, **kwargs):
        raise WeightsMissing("broken_chexagent: no weights at /nowhere")
"""


def test_a_model_that_fails_to_load_leaves_no_folder(phantom, tmp_path, capsys):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    out = tmp_path / "runs"
    assert main(_cmd(phantom, out, "--adapter-file", str(plugin), model="broken_chexagent")) == 2
    assert "no weights at /nowhere" in _error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--bootstrap-b", "0"),
        ("--bootstrap-samples", "-3"),
        ("--limit", "0"),
        ("--limit", "-1"),
        ("--batch-size", "0"),
        ("--max-gen-toks", "0"),
        ("--num-processes", "0"),
        ("--seed", "-1"),
        ("--seed", str(2**32)),
        ("--max-image-pixels", "0"),
        ("--limit", "ten"),
    ],
)
def test_bad_numbers_are_one_line_and_write_nothing(phantom, tmp_path, capsys, flag, value):
    out = tmp_path / "runs"
    assert main([*_cmd(phantom, out), flag, value]) == 2
    line = _error_line(capsys.readouterr().err)
    assert flag in line
    assert not out.exists()


def test_a_data_parallel_launch_is_refused_while_another_run_holds_the_folder(phantom, tmp_path):
    from harness.data import file_sha256
    from harness.locking import FolderLock, FolderLocked
    from harness.multiprocess import launch_data_parallel
    from harness.runner import LOCK_FILE, RunConfig, RunOptions, RunSpec, journal_dir

    spec = RunSpec(
        RunConfig(
            model="chexagent",
            model_args={"pretrained": "smoke"},
            data=str(phantom),
            tasks=tuple(TASKS.split(",")),
        ),
        RunOptions(output=str(tmp_path / "runs"), show_progress=False),
    )
    folder = journal_dir(spec.options.output, spec.config.scoring_id(file_sha256(phantom)))
    with FolderLock(folder / LOCK_FILE):
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()}"):
            launch_data_parallel(spec, 2)  # refused here, before any process starts
