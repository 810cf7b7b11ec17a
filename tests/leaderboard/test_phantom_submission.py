"""The measured case end to end, on the harness's own output: `chexbench demo --smoke` (a
random-weight model on 4 phantom items per pair), its results relabelled by editing fields,
then `chexbench submit`."""

from __future__ import annotations

import json
import zipfile

import pytest

from harness.cli import main as cli
from leaderboard.loader import PENDING, load_folder


@pytest.mark.slow
def test_a_relabelled_demo_run_cannot_reach_the_leaderboard(tmp_path, capsys):
    assert (
        cli(
            [
                "demo",
                "--output",
                str(tmp_path / "demo"),
                "--smoke",
                "--n-per-pair",
                "4",
                "--max-gen-toks",
                "4",
                "--no-fairness",
            ]
        )
        == 0
    )
    capsys.readouterr()
    (run,) = (tmp_path / "demo" / "runs").glob("*/results.json")
    original = json.loads(run.read_text())
    samples = (run.parent / original["samples_file"]).read_bytes()
    results = tmp_path / "results"

    def submit(name: str, **edits: object) -> tuple[int, str]:
        obj = json.loads(json.dumps(original))
        for dotted, value in edits.items():
            node = obj
            *parents, leaf = dotted.split("__")
            for key in parents:
                node = node[key]
            node[leaf] = value
        path = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("run.json", json.dumps(obj))
            archive.writestr(original["samples_file"], samples)
        code = cli(["submit", str(path), "--results", str(results)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, out = submit("relabelled", source="reproduced")
    assert code == 2 and "a synthetic run cannot be submitted" in out
    code, out = submit("no-synthetic", source="reproduced", run_card__synthetic=False)
    assert code == 2 and "model.smoke is true" in out
    # Every flag edited away: the data hash and n=4 still speak.
    code, out = submit("forged", source="reproduced", run_card__synthetic=False, model__smoke=False)
    assert code == 0, out
    assert f"data_sha256 {original['run_card']['data_sha256']} is not listed" in out
    assert "n=4 of 400 (Table 9)" in out
    [entry] = load_folder(results).entries
    assert entry.provenance == PENDING and not entry.comparable
    assert entry.flags == ("unverified data", "partial")
