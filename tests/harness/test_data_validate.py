"""`chexbench data validate` on the phantom set: counts, and a missing image named."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.phantom import generate_phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(
        tmp_path_factory.mktemp("validate"), n_per_pair=3, image_size=48, n_text=2, n_fairness=4
    )


def test_validate_passes_and_prints_counts_against_table_9(phantom, capsys):
    assert main(["data", "validate", "--data", str(phantom.data_json)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    for task, dataset, paper_n in (
        ("view_classification", "mimic_cxr", "400"),
        ("visual_question_answering", "rad_restruct", "899"),
        ("image_text_reasoning", "openi", "380"),
    ):
        line = next(ln for ln in out.splitlines() if task in ln and dataset in ln)
        assert " 3 " in line and paper_n in line


def test_validate_fails_naming_a_deleted_image(phantom, tmp_path, capsys):
    data = json.loads(phantom.data_json.read_text())
    victim = data["Visual Question Answering"][-1]["image_path"]
    # Point --image-root at a copy so the shared fixture stays intact.
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(phantom.out_dir, root)
    (root / victim).unlink()
    code = main(["data", "validate", "--data", str(phantom.data_json), "--image-root", str(root)])
    out = capsys.readouterr().out
    assert code == 1
    assert victim in out and "missing" in out and "visual_question_answering item" in out


def test_validate_malformed_data_exits_2_with_the_location(tmp_path, capsys):
    bad = tmp_path / "data.json"
    bad.write_text(
        json.dumps(
            {
                "View Classification": [
                    {
                        "data_source": "Nowhere",
                        "image_path": "x.png",
                        "question": "q",
                        "option_0": "a",
                        "option_1": "b",
                        "answer": 0,
                    }
                ]
            }
        )
    )
    assert main(["data", "validate", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "item 0" in err and "unknown data_source 'Nowhere'" in err


def test_phantom_command_writes_a_loadable_set(tmp_path, capsys):
    out = tmp_path / "p"
    code = main(
        [
            "phantom",
            "--output",
            str(out),
            "--n-per-pair",
            "1",
            "--image-size",
            "32",
            "--n-fairness",
            "2",
            "--seed",
            "3",
            "--disparity",
            "sex=female:0.5",
        ]
    )
    assert code == 0 and (out / "data.json").is_file()
    assert json.loads((out / "phantom.json").read_text())["disparity"]["group"] == "female"
    assert main(["phantom", "--output", str(out), "--disparity", "sex=robot"]) == 2
    assert "--disparity" in capsys.readouterr().err
