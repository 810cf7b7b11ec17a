"""`chexbench score` end to end: saved predictions in, schema-valid results + samples out."""

from __future__ import annotations

import json
import os

import pytest
from helpers.tiny_scorers import shared_scorer_cache

from harness.cli import main
from harness.io import read_jsonl
from harness.results_schema import validate_results

FINDINGS = ["Small left pleural effusion.", "Cardiomegaly.", "", "The lungs are clear."]


@pytest.fixture()
def data_file(tmp_path):
    items = [
        {
            "data_source": "MIMIC-CXR",
            "image_path": f"files/p10/p1000000{i}/s1/a.jpg",
            "section_indication": "dyspnea",
            "section_findings": f,
        }
        for i, f in enumerate(FINDINGS)
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"Findings Generation": items}))
    return path


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_score_end_to_end(tmp_path, data_file, tmp_path_factory, monkeypatch):
    root = shared_scorer_cache(tmp_path_factory)
    monkeypatch.chdir(tmp_path)  # a relative --cache-dir must survive the scorers' chdir
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            {"id": "findings_generation/0", "prediction": "No effusion."},
            {"id": 1, "prediction": "Cardiomegaly."},
            {"id": "2", "prediction": "anything"},
            {
                "id": "findings_generation/3",
                "prediction": "lungs are clear",
                "reference": "The lungs are clear.",
            },
        ],
    )
    out = tmp_path / "out"
    rc = main(
        [
            "score",
            "--task",
            "findings_generation",
            "--predictions",
            str(preds),
            "--references",
            str(data_file),
            "--output",
            str(out),
            "--cache-dir",
            os.path.relpath(root),
            "--metrics",
            "rougeL,chexbert",
            "--bootstrap-samples",
            "50",
        ]
    )
    assert rc == 0
    [results_path] = out.glob("*.json")
    results = json.loads(results_path.read_text())
    assert validate_results(results) == []
    assert results["kind"] == "run" and results["source"] == "reproduced"
    sub = results["subtasks"]["chexbench_findings_generation_mimic_cxr"]
    assert sub["n"] == 3 and sub["excluded"] == 1
    assert sub["excluded_reasons"] == {"empty_reference": 1}
    assert sub["metrics"]["chexbert_f1_micro14"]["value"] == pytest.approx(2 / 3)
    assert sub["metrics"]["chexbert_f1_micro14"]["ci_method"].startswith("percentile-bootstrap")
    # RadGraph (the generation headline) was not asked for: ROUGE-L headlines, as in a run.
    assert sub["headline"] == "rougeL"
    samples = read_jsonl(out / results["samples_file"])
    assert [s["item_id"] for s in samples] == [f"findings_generation/{i}" for i in range(4)]
    assert samples[0]["cluster_id"] == "p10000000"
    assert samples[2]["excluded"] == "empty_reference" and samples[2]["metrics"] == {}
    assert samples[3]["metrics"]["rougeL"] == pytest.approx(0.8571428, abs=1e-6)
    assert "excluded" not in samples[0]


def test_score_reports_every_bad_line_and_writes_nothing(tmp_path, data_file, capsys):
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            {"id": "findings_generation/0", "prediction": "x"},
            {"id": "findings_generation/9", "prediction": "x"},
            {"id": 0, "prediction": "y"},
            "{not json",
            {"id": "findings_summarization/1", "prediction": "z"},
            {"id": 1, "prediction": "z"},
        ],
    )
    out = tmp_path / "out"
    rc = main(
        [
            "score",
            "--task",
            "findings_generation",
            "--predictions",
            str(preds),
            "--references",
            str(data_file),
            "--output",
            str(out),
            "--metrics",
            "rougeL",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{preds}:2: unknown id findings_generation/9" in err
    assert f"{preds}:3: duplicate id findings_generation/0 (first on line 1)" in err
    assert f"{preds}:4: invalid JSON" in err
    assert f"{preds}:5: id 'findings_summarization/1' belongs to task" in err
    assert "4 problem(s)" in err
    assert not out.exists()


def test_score_missing_reference_without_data_file(tmp_path, capsys):
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            {"id": 0, "prediction": "x", "reference": "x"},
            {"id": 1, "prediction": "y"},
        ],
    )
    rc = main(
        [
            "score",
            "--task",
            "findings_summarization",
            "--predictions",
            str(preds),
            "--output",
            str(tmp_path / "o"),
            "--metrics",
            "rougeL",
        ]
    )
    assert rc == 2
    assert f"{preds}:2: no reference for findings_summarization/1" in capsys.readouterr().err


def test_score_without_data_and_with_a_missing_scorer(tmp_path, capsys):
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            {
                "id": 0,
                "prediction": "Impression: no acute process.",
                "reference": "No acute process.",
            },
            {"id": 1, "prediction": "stable", "reference": "Stable cardiomegaly."},
        ],
    )
    rc = main(
        [
            "score",
            "--task",
            "findings_summarization",
            "--predictions",
            str(preds),
            "--cache-dir",
            str(tmp_path / "empty-cache"),
            "--metrics",
            "rougeL,radgraph",
            "--bootstrap-samples",
            "20",
        ]
    )
    assert rc == 0
    [path] = [p for p in tmp_path.glob("score-*.json")]
    results = json.loads(path.read_text())
    assert validate_results(results) == []
    sub = results["subtasks"]["chexbench_findings_summarization_mimic_cxr"]
    assert sub["metrics"]["rougeL"]["value"] > 0
    rg = sub["metrics"]["radgraph_partial"]
    assert rg["value"] is None and "chexbench scorers fetch --only radgraph" in rg["unavailable"]
    assert "radgraph_partial: unavailable" in capsys.readouterr().out


def test_scorers_status_and_offline_fetch(tmp_path, capsys, monkeypatch):
    assert main(["scorers", "status", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "MISSING" in out and "chexbert.pth" in out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    rc = main(["scorers", "fetch", "--cache-dir", str(tmp_path), "--only", "chexbert"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "could not download CheXbert labeler checkpoint" in err
    assert f"place it at {tmp_path}/chexbert/chexbert.pth" in err
