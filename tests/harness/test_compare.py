"""`chexbench compare` end to end on saved runs: join, deltas, tests, Holm, JSON, ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_schema import (
    MetricValue,
    ModelInfo,
    Results,
    RunCard,
    SubtaskResult,
    validate_results,
)
from harness.stats.multiplicity import holm
from harness.taxonomy import SUBTASK_BY_NAME

N = 240


def _write_run(
    folder: Path,
    name: str,
    p_view: float,
    p_binary: float,
    rouge_shift: float,
    seed: int,
    drop: int = 0,
) -> Path:
    """A saved run: answers drawn at known accuracies, text metrics with a known shift."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, p in (
        ("chexbench_view_classification_mimic_cxr", p_view),
        ("chexbench_binary_disease_classification_rsna", p_binary),
    ):
        for i in range(drop, N):
            correct = bool(rng.random() < p)
            rows.append(
                {
                    "task": task,
                    "item_id": f"{task}/{i}",
                    "doc_id": i,
                    "cluster_id": f"p{i // 2}",
                    "answer": 0,
                    "prediction": 0 if correct else 1,
                    "correct": correct,
                }
            )
    base = np.random.default_rng(99).random(N)  # item difficulty shared by both runs
    for i in range(N):
        rows.append(
            {
                "task": "chexbench_findings_generation",
                "item_id": f"fg/{i}",
                "doc_id": i,
                "cluster_id": f"q{i}",
                "prediction": "text",
                "reference": "text",
                "metrics": {
                    "rougeL": float(base[i] + rouge_shift + 0.02 * rng.random()),
                    "bertscore_f1": float(base[i] + 0.02 * rng.random()),
                },
            }
        )
    samples = folder / f"{name}.samples.jsonl"
    atomic_write_jsonl(samples, rows)
    results = Results(
        run_id=f"run-{name}",
        source="demo",
        model=ModelInfo(name=name),
        run_card=RunCard(
            harness_version="0.1.0",
            harness_commit=None,
            packages={},
            created_at="2025-01-01T00:00:00+00:00",
            seed=seed,
        ),
        subtasks=_subtasks(rows),
        samples_file=samples.name,
    )
    path = folder / f"{name}.json"
    atomic_write_json(path, results.model_dump(mode="json"))
    return path


def _subtasks(rows: list[dict]) -> dict[str, SubtaskResult]:
    """The point estimates the rows give (a run file has subtasks; the schema requires them)."""
    out = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        sub = SUBTASK_BY_NAME[task] if task in SUBTASK_BY_NAME else None
        text = "correct" not in mine[0]
        value = (
            np.mean([r["metrics"]["rougeL"] for r in mine])
            if text
            else np.mean([r["correct"] for r in mine])
        )
        metric = "rougeL" if text else "acc_chexbench"
        out[task] = SubtaskResult(
            name=task,
            task=sub.task.slug if sub else "findings_generation",
            dataset=sub.dataset.slug if sub else "mimic_cxr",
            kind="text" if text else "perception",
            n=len(mine),
            headline=metric,
            metrics={metric: MetricValue(value=float(value), n=len(mine))},
        )
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runs")
    return {
        "strong": _write_run(folder, "strong", 0.9, 0.7, 0.05, seed=1),
        "weak": _write_run(folder, "weak", 0.6, 0.7, 0.0, seed=2, drop=10),
        "middle": _write_run(folder, "middle", 0.75, 0.7, 0.02, seed=3),
    }


def test_compare_two_runs_finds_the_real_difference_and_not_the_null(runs, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    rc = main(
        [
            "compare",
            str(runs["strong"]),
            str(runs["weak"]),
            "-o",
            str(out),
            "-B",
            "500",
            "--permutations",
            "2000",
        ]
    )
    assert rc == 0
    obj = json.loads(out.read_text())
    assert validate_results(obj) == []
    assert obj["kind"] == "comparison" and obj["run_card"]["bootstrap"]["B"] == 500
    block = obj["comparison"]
    rows = {(r["subtask"], r["metric"]): r for r in block["rows"]}
    assert set(rows) == {
        ("chexbench_view_classification_mimic_cxr", "acc_chexbench"),
        ("chexbench_binary_disease_classification_rsna", "acc_chexbench"),
        ("chexbench_findings_generation", "bertscore_f1"),
        ("chexbench_findings_generation", "rougeL"),
    }
    view = rows[("chexbench_view_classification_mimic_cxr", "acc_chexbench")]
    assert view["n"] == N - 10 and view["test"] == "mcnemar-exact"
    assert view["delta"] > 0.15 and view["ci"][0] > 0 and view["p_holm"] < 0.001
    same = rows[("chexbench_binary_disease_classification_rsna", "acc_chexbench")]
    assert same["ci"][0] < 0 < same["ci"][1] and same["p_holm"] > 0.05
    rouge = rows[("chexbench_findings_generation", "rougeL")]
    assert rouge["delta"] == pytest.approx(0.05, abs=0.01) and rouge["p_holm"] < 0.01
    assert rouge["test"].startswith("paired-permutation")
    np.testing.assert_allclose(
        [r["p_holm"] for r in block["rows"]], holm([r["p"] for r in block["rows"]])
    )
    assert block["unmatched"] == {"only_a": 20, "only_b": 0}
    assert "view_classification_mimic_cxr" in capsys.readouterr().out


def test_compare_is_deterministic_for_a_seed(runs, tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"c{i}.json"
        main(
            [
                "compare",
                str(runs["strong"]),
                str(runs["weak"]),
                "-o",
                str(out),
                "-B",
                "200",
                "--permutations",
                "500",
                "--seed",
                "7",
            ]
        )
        outs.append(json.loads(out.read_text())["comparison"])
    assert outs[0] == outs[1]


def test_compare_many_runs_gives_rank_table_with_intervals(runs, tmp_path):
    out = tmp_path / "rank.json"
    rc = main(
        [
            "compare",
            str(runs["weak"]),
            str(runs["strong"]),
            str(runs["middle"]),
            "-o",
            str(out),
            "-B",
            "300",
        ]
    )
    assert rc == 0
    obj = json.loads(out.read_text())
    assert validate_results(obj) == []
    perception = obj["comparison"]["rankings"]["perception/acc_chexbench"]
    assert [r["run"] for r in perception["rows"]] == ["strong", "middle", "weak"]
    assert perception["rows"][0]["rank_ci"][0] == 1
    for r in perception["rows"]:
        assert r["rank_ci"][0] <= r["rank"] <= r["rank_ci"][1]
        assert r["ci"][0] <= r["score"] <= r["ci"][1]
    rouge = obj["comparison"]["rankings"]["text/rougeL"]
    assert rouge["rows"][0]["run"] == "strong" and rouge["rows"][0]["rank_ci"] == [1, 1]


def test_compare_bad_input_is_a_clear_error(runs, tmp_path, capsys):
    assert main(["compare", str(runs["strong"]), str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    dup = tmp_path / "dup.samples.jsonl"
    row = {"task": "t", "item_id": "1", "correct": True}
    atomic_write_jsonl(dup, [row, row])
    assert main(["compare", str(dup), str(dup), "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "duplicate" in err
    assert not (tmp_path / "x.json").exists()


HOSTILE = "m[/b]\x1b[31m"


def test_hostile_model_name_is_printed_escaped_not_obeyed(tmp_path, capsys):
    """A model name is file text: Rich markup in it must not crash the table, and an ANSI
    escape in it must be shown, not sent to the terminal."""
    paths = [
        _write_run(tmp_path, name, p, 0.7, 0.0, seed=i)
        for i, (name, p) in enumerate((("a", 0.9), ("b", 0.6), ("c", 0.7)))
    ]
    obj = json.loads(paths[0].read_text())
    obj["model"]["name"] = HOSTILE
    paths[0].write_text(json.dumps(obj))
    for runs in (paths[:2], paths):  # the pair table, then the rank table
        out = tmp_path / f"cmp{len(runs)}.json"
        rc = main(["compare", *map(str, runs), "-o", str(out), "-B", "100"])
        printed = capsys.readouterr().out
        assert rc == 0
        assert "m[/b]\\x1b[31m" in printed and "\x1b" not in printed


def test_comparison_id_follows_the_files_content_not_their_paths(runs, tmp_path):
    def run_id(a: Path, b: Path, out: str) -> str:
        assert main(["compare", str(a), str(b), "-o", str(tmp_path / out), "-B", "100"]) == 0
        return json.loads((tmp_path / out).read_text())["run_id"]

    first = run_id(runs["strong"], runs["weak"], "a.json")
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("strong", "weak"):
        for suffix in (".json", ".samples.jsonl"):
            (moved / f"{name}{suffix}").write_bytes(
                (runs[name].parent / f"{name}{suffix}").read_bytes()
            )
    assert run_id(moved / "strong.json", moved / "weak.json", "b.json") == first
    samples = moved / "weak.samples.jsonl"
    samples.write_text(samples.read_text().replace('"correct": true', '"correct": false', 5))
    assert run_id(moved / "strong.json", moved / "weak.json", "c.json") != first
