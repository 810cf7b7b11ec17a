"""Every user mistake is one line on stderr, exit 2, no traceback, nothing written.

Run as a user runs it: a fresh `python -m harness.cli` process per mistake, so nothing of
the test process (captured streams, caught exceptions) can hide a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.phantom import generate_phantom

pytestmark = pytest.mark.slow  # a fresh interpreter per mistake: ~50 s in all


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    return generate_phantom(
        root, n_per_pair=2, seed=5, image_size=32, n_text=1, n_fairness=0
    ).data_json


def _run(data, out, *args: str) -> subprocess.CompletedProcess:
    """The command in a fresh process, from the folder that holds `out` (so a stray relative
    write lands where the test looks)."""
    argv = [a.format(data=data, out=out) for a in args]
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out.parent,
    )


RUN = ("run", "--data", "{data}", "--output", "{out}")
MISTAKES = {
    "unknown model arg": (
        (
            *RUN,
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke,foo=1",
            "--tasks",
            "chexbench_view_classification_mimic_cxr",
        ),
        "foo",
    ),
    "unknown model arg in check-adapter": (
        ("check-adapter", "chexagent", "--model-args", "pretrained=smoke,foo=1"),
        "foo",
    ),
    "misspelt task": (
        (
            *RUN,
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke",
            "--tasks",
            "chexbench_view_clasification_mimic_cxr",
        ),
        "did you mean 'chexbench_view_classification_mimic_cxr'",
    ),
    "unknown adapter": (
        (*RUN, "--model", "chexagnet", "--tasks", "chexbench_view_classification_mimic_cxr"),
        "did you mean 'chexagent'",
    ),
    "negative limit": ((*RUN, "--model", "chexagent", "--limit", "-1"), "--limit"),
    "zero bootstrap samples": (
        (*RUN, "--model", "chexagent", "--bootstrap-samples", "0"),
        "--bootstrap-samples",
    ),
    "missing data file": (
        (
            "run",
            "--data",
            "{out}/absent.json",
            "--output",
            "{out}",
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke",
        ),
        "absent.json",
    ),
    "missing weights": (
        (
            *RUN,
            "--model",
            "blip2",
            "--model-args",
            "pretrained={out}/no-model",
            "--tasks",
            "chexbench_view_classification_mimic_cxr",
        ),
        "no-model",
    ),
    "remote code without the flag": (
        (*RUN, "--model", "chexagent-8b", "--tasks", "chexbench_view_classification_mimic_cxr"),
        "--trust-remote-code",
    ),
    "missing run file": (("compare", "{out}/a.json", "{out}/b.json"), "a.json"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_is_one_line_exit_2_and_writes_nothing(name, data, tmp_path):
    args, needle = MISTAKES[name]
    out = tmp_path / "out"
    proc = _run(data, out, *args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert needle in errors[0], errors[0]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not left, f"a failed command left files behind: {left}"
