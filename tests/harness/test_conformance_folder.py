"""check-adapter's phantom items live in a folder that is removed after the checks (every
`chexbench check-adapter` used to leave a chexbench-conformance-* folder in the temp dir)."""

from __future__ import annotations

import subprocess
import sys
import tempfile

from harness.cli import main


def test_check_adapter_leaves_no_folder_behind(tmp_path, monkeypatch, single_thread):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    argv = ["check-adapter", "chexagent", "--model-args", "pretrained=smoke", "--items", "1"]
    assert main(argv) in (0, 1)  # the verdict is test_conformance's business; the folder is ours
    assert list(temp.glob("chexbench-conformance-*")) == []  # (torch may cache its own there)


def test_items_without_a_folder_are_removed_when_the_process_exits(tmp_path):
    code = (
        "from harness.conformance import phantom_items; import os\n"
        "path = phantom_items(1)[0][2][0].path\n"
        "assert os.path.isfile(path)\n"
        "print(path)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(tmp_path))
    assert list(tmp_path.glob("chexbench-conformance-*")) == []
