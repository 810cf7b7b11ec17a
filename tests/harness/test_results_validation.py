"""The results schema means what docs/results-schema.md says: finite numbers, fractions in
[0, 1], lo <= value <= hi, counts >= 0, the blocks each kind needs. `chexbench results
validate`, the leaderboard loader and `chexbench submit` all refuse what it refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from helpers.leaderboard import VIEW_MIMIC, build_folder, perception_results

from harness.cli import main as cli
from harness.results_schema import MetricValue, SubtaskResult, validate_results
from leaderboard.loader import load_folder

REPO = Path(__file__).resolve().parents[2]
HEAD = ["subtasks", VIEW_MIMIC, "metrics", "acc_chexbench"]


def _valid() -> dict:
    results = perception_results("r", "M", {VIEW_MIMIC: (0.6, 0.5, 0.7)})
    text = SubtaskResult(
        name="chexbench_findings_summarization",
        task="findings_summarization",
        dataset="mimic_cxr",
        kind="text",
        n=20,
        headline="rougeL",
        metrics={
            "rougeL": MetricValue(value=0.3, ci=(0.2, 0.4)),
            # Lower is better and unbounded; rescaled BERTScore falls below 0.
            "radcliq_v1": MetricValue(value=-0.4, ci=(-0.9, 0.1)),
            "bertscore_f1": MetricValue(value=-0.05, ci=(-0.2, 0.1)),
            "chexbert_f1_micro14": MetricValue(value=None, unavailable="no checkpoint; -; fetch"),
        },
    )
    results.subtasks[text.name] = text
    return results.model_dump(mode="json")


def _set(obj: dict, path: list, value) -> dict:
    obj = copy.deepcopy(obj)
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return obj


# (name, mutation of the valid file, text the error must contain)
IMPOSSIBLE = [
    ("nan", lambda d: _set(d, [*HEAD, "value"], float("nan")), "NaN"),
    ("inf", lambda d: _set(d, [*HEAD, "value"], float("inf")), "Infinity"),
    ("minus-inf", lambda d: _set(d, [*HEAD, "ci"], [float("-inf"), 0.7]), "Infinity"),
    ("1e308", lambda d: _set(d, [*HEAD, "value"], 1e308), "outside [0, 1]"),
    ("accuracy-1.7", lambda d: _set(d, [*HEAD, "value"], 1.7), "outside [0, 1]"),
    ("ci-above-1", lambda d: _set(d, [*HEAD, "ci"], [0.5, 1.2]), "outside [0, 1]"),
    ("inverted-ci", lambda d: _set(d, [*HEAD, "ci"], [1.0, 0.2]), "lower bound"),
    ("value-outside-ci", lambda d: _set(d, [*HEAD, "ci"], [0.1, 0.2]), "outside its CI"),
    ("negative-n", lambda d: _set(d, ["subtasks", VIEW_MIMIC, "n"], -5), "minimum of 0"),
    ("negative-metric-n", lambda d: _set(d, [*HEAD, "n"], -5), "minimum of 0"),
    ("negative-stderr", lambda d: _set(d, [*HEAD, "stderr"], -0.1), "minimum of 0"),
    ("null-without-reason", lambda d: _set(d, [*HEAD, "value"], None), "unavailable"),
    ("run-without-subtasks", lambda d: _set(d, ["subtasks"], {}), "subtasks"),
    (
        "judge-without-block",
        lambda d: _set(d, ["kind"], "judge"),
        "judge: None is not of type 'object'",
    ),
    ("reproduced-without-run-card", lambda d: _set(d, ["run_card"], None), "run_card"),
    (
        "bertscore-above-1",
        lambda d: _set(
            d,
            ["subtasks", "chexbench_findings_summarization", "metrics", "bertscore_f1", "value"],
            1.5,
        ),
        "outside [-inf, 1]",
    ),
]


def test_valid_files_pass():
    assert validate_results(_valid()) == []
    for path in sorted((REPO / "results" / "paper").glob("*.json")):
        assert validate_results(json.loads(path.read_text())) == [], path.name


@pytest.mark.parametrize(
    "mutate, expected", [(m, e) for _, m, e in IMPOSSIBLE], ids=[name for name, _, _ in IMPOSSIBLE]
)
def test_impossible_numbers_fail_results_validate(tmp_path, capsys, mutate, expected):
    path = tmp_path / "results.json"
    # allow_nan: Python writes NaN / Infinity tokens, as a careless or hostile writer would.
    path.write_text(json.dumps(mutate(_valid()), allow_nan=True))
    assert cli(["results", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert expected in out, out
    assert out.splitlines()[-1].endswith("error(s)")


def test_a_number_that_overflows_to_infinity_is_refused(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_valid()).replace('"value": 0.6', '"value": 1e400'))
    assert cli(["results", "validate", str(path)]) == 1
    assert "1e400 overflows a float" in capsys.readouterr().out


def test_deeply_nested_json_is_one_line_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert cli(["results", "validate", str(path)]) == 1
    assert "nested too deeply" in capsys.readouterr().out
    assert cli(["results", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and len(err.strip().splitlines()) == 1


def test_the_leaderboard_loader_refuses_them_and_shows_the_reason(tmp_path):
    """Before: an accuracy of Infinity loaded and was marked best in every row."""
    root = build_folder(tmp_path / "results", with_extras=False)
    for name, mutate, _ in IMPOSSIBLE:
        (root / f"{name}.json").write_text(json.dumps(mutate(_valid()), allow_nan=True))
    loaded = load_folder(root)
    assert {e.results.run_id for e in loaded.entries} == {
        e.results.run_id for e in load_folder(root / "paper").entries
    }
    assert sorted(r.path.stem for r in loaded.rejected) == sorted(n for n, _, _ in IMPOSSIBLE)
    for rejected in loaded.rejected:
        assert rejected.reason.startswith(f"{rejected.path.name}: "), rejected.reason
