"""Every hostile data file (tests/support/helpers/hostile_data.py) is refused the same way by
`chexbench data validate` and `chexbench run`: a non-zero exit, one error line naming the file,
task and item, no traceback, and nothing written under --output. Each case once crashed a run
after the model had loaded, or scored the file silently wrong.
"""

from __future__ import annotations

import pytest
from helpers.hostile_data import CASES, write_case

from harness.cli import main

SUBTASK = "chexbench_view_classification_mimic_cxr"


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def _names_the_place(line: str, case, data) -> None:
    assert str(data) in line, line
    if case.task is not None:
        assert case.task in line or SUBTASK in line, line
    if case.item is not None:
        assert f"item {case.item}" in line, line


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.stage == "data"])
def test_data_validate_refuses_hostile_data_in_one_line(name, tmp_path, capsys):
    case = CASES[name]
    data = write_case(name, tmp_path / name)
    assert main(["data", "validate", "--data", str(data)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert case.expect in line, line
    _names_the_place(line, case, data)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.stage == "image"])
def test_data_validate_decodes_every_image(name, tmp_path, capsys):
    """Image problems are listed (exit 1, the command's documented code), one line each."""
    case = CASES[name]
    data = write_case(name, tmp_path / name)
    assert main(["data", "validate", "--data", str(data)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    (line,) = [ln for ln in out.splitlines() if "item 0:" in ln]
    assert case.expect in line and "view_classification item 0" in line, out


@pytest.mark.parametrize("name", list(CASES))
def test_run_refuses_hostile_data_and_writes_nothing(name, tmp_path, capsys):
    case = CASES[name]
    data = write_case(name, tmp_path / name)
    output = tmp_path / "out"
    code = main(
        [
            "run",
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke",
            "--data",
            str(data),
            "--output",
            str(output),
            "--no-progress",
            "--bootstrap-samples",
            "10",
        ]
    )
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert case.expect in line, line
    _names_the_place(line, case, data)
    assert not output.exists(), sorted(p.name for p in output.rglob("*"))


def test_the_image_size_limit_is_configurable(tmp_path, capsys):
    data = write_case("option_gap", tmp_path / "ok")  # any case: its image is 48 x 48
    data.write_text(
        data.read_text()
        .replace('"option_1": null', '"option_1": "PA"')
        .replace('"answer": 2', '"answer": 1')
    )
    assert main(["data", "validate", "--data", str(data), "--max-image-pixels", "2304"]) == 0
    assert main(["data", "validate", "--data", str(data), "--max-image-pixels", "2303"]) == 1
    assert "48x48 pixels is over the image size limit of 2,303 pixels" in capsys.readouterr().out
    huge = write_case("huge_png", tmp_path / "huge")
    assert (
        main(["data", "validate", "--data", str(huge), "--max-image-pixels", str(20000 * 20000)])
        == 1
    )  # passes the size, not decoding
    out = capsys.readouterr().out
    assert "size limit" not in out and "item 0:" in out
    assert main(["data", "validate", "--data", str(data), "--max-image-pixels", "0"]) == 2
    assert "--max-image-pixels: must be at least 1" in capsys.readouterr().err


def test_the_360kb_question_runs_cut_with_truncate_prompts(tmp_path, capsys):
    """The one refusal a flag may turn into a run: the item's text is cut from the left to fit,
    the cut is recorded in the results and its samples, and the leaderboard never compares the
    subtask (not the official protocol for that item)."""
    import json

    from harness.results_schema import Results
    from leaderboard.provenance import TRUNCATED, OfficialData, assess

    data = write_case("question_360kb", tmp_path / "case")
    output = tmp_path / "out"
    args = ["run", "--model", "chexagent", "--model-args", "pretrained=smoke", "--data", str(data)]
    args += ["--output", str(output), "--no-progress", "--bootstrap-samples", "10"]
    assert main([*args, "--truncate-prompts"]) == 0, capsys.readouterr().err[-2000:]
    (path,) = [p for p in output.rglob("results.json")]
    results = json.loads(path.read_text())
    cuts = results["run_card"]["extra"]["prompts"]["truncated"]
    (dropped,) = cuts[SUBTASK].values()
    question = json.loads(data.read_text())["View Classification"][0]["question"]
    (row,) = [json.loads(line) for line in (path.parent / "samples.jsonl").read_text().splitlines()]
    fed = row["question"]
    assert fed == " ".join(question.split(" ")[dropped:]) and 0 < dropped < question.count(" ")
    # Were these real weights (smoke rows are never compared at all), the subtask is flagged.
    run = Results.model_validate(results)
    run.model.smoke = False
    trust = assess(run, None, OfficialData({run.run_card.data_sha256: "official"}))
    assert TRUNCATED in trust.flags and SUBTASK in trust.partial
    assert f"{SUBTASK}: 1 item(s) with text cut" in " ".join(trust.reasons)
