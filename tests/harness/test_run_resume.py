"""`chexbench run` end to end: schema-valid results, and a kill -9 in the middle loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.io import read_jsonl
from harness.phantom import generate_phantom
from harness.results_schema import validate_results

TASKS = (
    "chexbench_view_classification_mimic_cxr,chexbench_single_disease_identification_openi,"
    "chexbench_findings_summarization"
)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(
        out, n_per_pair=6, seed=3, image_size=64, n_text=3, n_fairness=0
    ).data_json


@pytest.fixture(scope="module")
def reference(phantom, tmp_path_factory) -> Path:
    """An uninterrupted batch-size-1 run, in a fresh interpreter as a user would start it."""
    out = tmp_path_factory.mktemp("ref")
    _run(_cmd(phantom, out, 1))
    return _only_dir(out)


def _cmd(data: Path, output: Path, batch_size: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--model",
        "chexagent",
        "--model-args",
        "pretrained=smoke",
        "--data",
        str(data),
        "--tasks",
        TASKS,
        "--output",
        str(output),
        "--batch-size",
        str(batch_size),
        "--text-metrics",
        "rouge",
        "--max-gen-toks",
        "6",
        "--bootstrap-samples",
        "200",
    ]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run_here(cmd: list[str]) -> int:
    """The same command in this process (no interpreter start-up: the suite stays fast)."""
    from harness.cli import main

    return main(cmd[3:])


def _only_dir(output: Path) -> Path:
    (run_dir,) = [p for p in output.iterdir() if p.is_dir() and p.name != ".journal"]
    return run_dir


def _journal(output: Path) -> Path:
    (scores,) = (output / ".journal").iterdir()
    return scores / "journal.jsonl"


# A plug-in adapter (the path users take with --adapter-file) that is the smoke CheXagent but
# SIGKILLs its own process at the start of decoder pass N when KILL_AT_FORWARD=N is set: the
# kill lands at a known point whatever the machine's speed, with no polling.
KILLER = """
import os, signal
from model_adapters.chexagent import CheXagentAdapter

class KillingCheXagent(CheXagentAdapter):
    name = "killing_chexagent"
    calls = 0

    def lm_forward(self, *args, **kwargs):
        KillingCheXagent.calls += 1
        if KillingCheXagent.calls == int(os.environ.get("KILL_AT_FORWARD", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().lm_forward(*args, **kwargs)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(phantom, reference, tmp_path):
    ref_dir = reference
    ref = json.loads((ref_dir / "results.json").read_text())
    assert validate_results(ref) == []
    assert ref["source"] == "demo" and ref["run_card"]["synthetic"] is True
    assert ref["model"]["smoke"] is True

    # The same run killed at its 7th decoder pass (3 items scored: prefix + options each).
    out = tmp_path / "killed"
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER)
    cmd = _cmd(phantom, out, 1)
    cmd[cmd.index("chexagent")] = "killing_chexagent"
    cmd += ["--adapter-file", str(plugin)]
    killed = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "KILL_AT_FORWARD": "7"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    total = len(read_jsonl(_journal(reference.parent)))
    assert not list(out.glob("*/results.json"))
    scored_before = len(read_jsonl(_journal(out)))
    assert 0 < scored_before < total

    _run(cmd)
    run_dir = _only_dir(out)
    keys = [row["key"] for row in read_jsonl(_journal(out))]
    assert len(keys) == len(set(keys)) == total, "a request was scored twice or lost"
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["run_card"]["extra"]["requests_resumed"] == scored_before
    assert resumed["subtasks"] == ref["subtasks"]
    assert resumed["groups"] == ref["groups"]
    assert (run_dir / "samples.jsonl").read_text() == (ref_dir / "samples.jsonl").read_text()


def test_batch_size_does_not_change_results(phantom, reference, tmp_path):
    assert _run_here(_cmd(phantom, tmp_path / "b8", 8)) == 0
    rows1 = read_jsonl(reference / "samples.jsonl")
    rows8 = read_jsonl(_only_dir(tmp_path / "b8") / "samples.jsonl")
    assert len(rows1) == len(rows8) > 0
    for a, b in zip(rows1, rows8, strict=True):
        assert a["item_id"] == b["item_id"]
        if "logprobs" in a:
            assert max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"], strict=True)) < 1e-4
            assert a["prediction"] == b["prediction"]
        else:
            assert a["prediction"] == b["prediction"]


def test_missing_image_is_an_error_naming_task_item_and_path(phantom, tmp_path, capsys):
    data = json.loads(phantom.read_text())
    victim = data["View Classification"][2]["image_path"].split("|")[0]
    copy = tmp_path / "data.json"
    copy.write_text(json.dumps(data))
    cmd = _cmd(copy, tmp_path / "out", 8)
    cmd += ["--image-root", str(phantom.parent)]
    (phantom.parent / victim).rename(tmp_path / "moved.png")
    try:
        assert _run_here(cmd) == 2
        err = capsys.readouterr().err
        assert "chexbench_view_classification_mimic_cxr" in err
        assert "item 2" in err and victim in err
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/*.json"))
        assert _run_here(cmd + ["--skip-missing"]) == 0
        res = json.loads((_only_dir(tmp_path / "out") / "results.json").read_text())
        sub = res["subtasks"]["chexbench_view_classification_mimic_cxr"]
        assert sub["excluded"] == 1 and sub["n"] == 5
        assert sub["excluded_reasons"] == {"image_missing": 1}
    finally:
        (tmp_path / "moved.png").rename(phantom.parent / victim)
