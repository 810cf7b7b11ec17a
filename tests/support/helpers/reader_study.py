"""Run folders for the reader-study tests: what `chexbench run` writes, made without a model.

A results.json that passes the schema and a samples.jsonl over a phantom data.json (real PNG
radiographs), so export, privacy and packet tests exercise the same files a real run gives.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.data import load_data
from harness.results_schema import (
    MetricValue,
    ModelInfo,
    Results,
    RunCard,
    SubtaskResult,
    validate_results,
)
from harness.taxonomy import TEXT_TASK_NAMES
from harness.text_metrics.rouge import rouge_l

MODEL_NAME = "AcmeCXR-7B"
TASK = "findings_generation"


def model_text(reference: str, k: int) -> str:
    """Model-like output: lower case, one sentence dropped, some planted unblinding cues."""
    sents = [s.strip() for s in reference.split(".") if s.strip()]
    kept = sents[: max(1, len(sents) - (k % 2))]
    body = ". ".join(s.lower() for s in kept) + "."
    if k % 3 == 0:
        body = "FINDINGS: 1. " + body.replace(". ", ". 2. ", 1)
    if k % 4 == 0:
        body += "\n\nElectronically signed by Dr. Jane Roe"
    return body


def write_run(
    folder: Path,
    data_path: Path,
    *,
    name: str = MODEL_NAME,
    plant: dict[int, str] | None = None,
    synthetic: bool = True,
    smoke: bool = False,
) -> Path:
    """A run of `name` on the text items of `data_path`; `plant` appends text to item k.

    `synthetic` (the phantom data is synthetic) and `smoke` (a random-weight model) are what
    the run card and model block of a real run record.
    """
    data = load_data(data_path)
    rows = []
    for k, item in enumerate(t for t in data.text if t.task == TASK):
        pred = model_text(item.reference, k) + (plant or {}).get(k, "")
        rows.append(
            {
                "task": TEXT_TASK_NAMES[TASK],
                "item_id": item.item_id,
                "doc_id": k,
                "dataset": item.dataset,
                "cluster_id": item.cluster_id,
                "image_paths": item.image_paths,
                "prompt": "irrelevant",
                "prediction": pred,
                "reference": item.reference,
                "metrics": {"rougeL": rouge_l([pred], [item.reference])[0]},
            }
        )
    card = RunCard(
        harness_version="0.1.0",
        harness_commit=None,
        packages={},
        created_at="2025-01-01T00:00:00+00:00",
        seed=0,
        data_file=str(data_path),
        synthetic=synthetic,
    )
    full = TEXT_TASK_NAMES[TASK]
    mean = sum(r["metrics"]["rougeL"] for r in rows) / len(rows)
    subtask = SubtaskResult(
        name=full,
        task=TASK,
        dataset="mixed",
        kind="text",
        n=len(rows),
        metrics={"rougeL": MetricValue(value=mean, n=len(rows))},
    )
    res = Results(
        run_id=f"{name}-run",
        source="demo" if synthetic or smoke else "reproduced",
        model=ModelInfo(name=name, smoke=smoke),
        run_card=card,
        samples_file="samples.jsonl",
        subtasks={full: subtask},
    ).model_dump(mode="json")
    assert validate_results(res) == []
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
