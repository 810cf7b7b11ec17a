"""Builders of the results folders and bundles the leaderboard tests use (tests/leaderboard/).

Runs are honest by construction: a run's n and accuracy are computed from the sample rows it
is written with, and its run card names OFFICIAL_SHA, which `build_folder` lists as the
official data.json, so only what a test changes on purpose makes a row untrusted.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_schema import MetricValue, ModelInfo, Results, RunCard, SubtaskResult
from harness.taxonomy import PERCEPTION_SUBTASKS

REPO = Path(__file__).resolve().parents[3]
PAPER_DIR = REPO / "results" / "paper"
OFFICIAL_SHA = "0" * 63 + "1"  # stands for the official data.json's sha256 in these folders
VIEW_MIMIC = "chexbench_view_classification_mimic_cxr"


def run_card(synthetic: bool = False, data_sha256: str | None = OFFICIAL_SHA) -> RunCard:
    return RunCard(
        harness_version="0.1.0",
        harness_commit="abc1234",
        packages={"torch": "2.13.0"},
        command=["chexbench", "run"],
        created_at="2026-01-01T00:00:00+00:00",
        seed=1234,
        bootstrap={"B": 1000, "seed": 1234, "unit": "cluster"},
        synthetic=synthetic,
        data_sha256=data_sha256,
    )


def perception_results(
    run_id: str,
    model: str,
    accs: dict[str, tuple[float, float, float]],
    source: str = "reproduced",
    samples_file: str | None = None,
    synthetic: bool = False,
    model_id: str | None = None,
    n: int = 20,
    smoke: bool = False,
    data_sha256: str | None = OFFICIAL_SHA,
) -> Results:
    """accs: subtask name -> (value, ci_lo, ci_hi)."""
    subtasks = {}
    for name, (value, lo, hi) in accs.items():
        sub = next(s for s in PERCEPTION_SUBTASKS if s.name == name)
        subtasks[name] = SubtaskResult(
            name=name,
            task=sub.task.slug,
            dataset=sub.dataset.slug,
            kind="perception",
            n=n,
            headline="acc_chexbench",
            metrics={
                "acc_chexbench": MetricValue(
                    value=value, ci=(lo, hi), ci_method="percentile-bootstrap/cluster", n=n
                ),
                "acc": MetricValue(value=max(0.0, value - 0.05), n=n),
            },
        )
    return Results(
        run_id=run_id,
        source=source,
        model=ModelInfo(name=model, model_id=model_id, smoke=smoke),
        run_card=run_card(synthetic, data_sha256),
        subtasks=subtasks,
        samples_file=samples_file,
    )


def sample_rows(task: str, n: int, seed: int, image: str | None) -> list[dict]:
    """Per-item rows in the harness's samples format, seeded; about 70% correct."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        logprobs = [float(x) for x in rng.normal(-4, 1, size=4)]
        counts = [1, 1, 2, 1]
        answer = int(rng.integers(0, 4))
        if rng.random() < 0.7:
            logprobs[answer] = 0.5
        means = [lp / c for lp, c in zip(logprobs, counts, strict=True)]
        pred = int(np.argmax(means))
        rows.append(
            {
                "task": task,
                "item_id": f"view_classification/{i}",
                "doc_id": i,
                "dataset": "mimic_cxr",
                "cluster_id": f"p{i // 2}",
                "question": f"What is the view of this chest X-ray? (item {i})",
                "options": ["AP", "PA", "Lateral", "LL"],
                "answer": answer,
                "image_paths": [image] if image else [],
                "logprobs": logprobs,
                "token_counts": counts,
                "prediction": pred,
                "correct": pred == answer,
            }
        )
    return rows


def write_results(path: Path, results: Results) -> Path:
    atomic_write_json(path, results.model_dump(mode="json"))
    return path


def write_official(root: Path, *hashes: str) -> Path:
    """The maintainer's list of official data.json hashes in results folder `root`."""
    return write_json(
        root / "official_data.json", {"data_sha256": {h: "test data.json" for h in hashes}}
    )


def write_json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj)
    return path


def build_folder(root: Path, with_extras: bool = True) -> Path:
    """A results folder: the shipped paper rows plus, with extras, the official-data list, two
    local runs with samples (one CheXagent reproduction), judge / fairness / comparison files,
    a demo run and two bad files."""
    (root / "paper").mkdir(parents=True)
    for src in PAPER_DIR.glob("*.json"):
        (root / "paper" / src.name).write_bytes(src.read_bytes())
    if not with_extras:
        return root
    write_official(root, OFFICIAL_SHA)
    runs = root / "runs"
    runs.mkdir()
    Image.new("L", (64, 64), 128).save(runs / "cxr.png")
    name = VIEW_MIMIC
    rows_a = sample_rows(name, 20, 1, "cxr.png")
    rows_b = sample_rows(name, 20, 2, None)
    atomic_write_jsonl(runs / "chexagent.samples.jsonl", rows_a)
    atomic_write_jsonl(runs / "blip.samples.jsonl", rows_b)
    acc_a = float(np.mean([r["correct"] for r in rows_a]))
    acc_b = float(np.mean([r["correct"] for r in rows_b]))
    write_results(
        runs / "chexagent.json",
        perception_results(
            "run-chexagent",
            "CheXagent",
            {name: (acc_a, acc_a - 0.1, acc_a + 0.1)},
            samples_file="chexagent.samples.jsonl",
            model_id="StanfordAIMI/CheXagent-8b",
        ),
    )
    write_results(
        runs / "blip.json",
        perception_results(
            "run-blip",
            "BLIP-2",
            {name: (acc_b, acc_b - 0.1, acc_b + 0.1)},
            samples_file="blip.samples.jsonl",
        ),
    )
    write_results(
        root / "demo.json",
        perception_results(
            "demo-run", "DemoModel", {name: (0.9, 0.8, 0.95)}, source="demo", synthetic=True
        ),
    )
    judge = Results(
        run_id="judge-1",
        kind="judge",
        source="reproduced",
        model=ModelInfo(name="gpt-4o (judge)"),
        run_card=run_card(),
        judge={
            "judge_model": "gpt-4o",
            "pairs": [
                {
                    "model_a": "CheXagent",
                    "model_b": "XrayGPT",
                    "task": "findings_generation",
                    "n": 152,
                    "win": {"value": 0.59, "ci": [0.51, 0.67]},
                    "tie": {"value": 0.28, "ci": [0.21, 0.35]},
                    "loss": {"value": 0.13, "ci": [0.08, 0.19]},
                    "position_flip_rate": 0.07,
                    "unparseable": 0,
                }
            ],
        },
    )
    write_results(root / "judge.json", judge)
    fairness = Results(
        run_id="fair-1",
        kind="fairness",
        source="reproduced",
        model=ModelInfo(name="CheXagent"),
        run_card=run_card(),
        fairness={
            "task": "cardiomegaly",
            "protocol": "balanced-bootstrap",
            "B": 2000,
            "seed": 1234,
            "attributes": {
                "sex": {
                    "groups": {
                        "female": {
                            "f1_mean": 0.71,
                            "f1_std": 0.04,
                            "n_subjects": 70,
                            "n_items": 400,
                        },
                        "male": {"f1_mean": 0.78, "f1_std": 0.03, "n_subjects": 89, "n_items": 400},
                    },
                    "gap": {"value": 0.07, "ci": [0.01, 0.13]},
                }
            },
            "warnings": [],
        },
    )
    write_results(root / "fairness.json", fairness)
    comparison = Results(
        run_id="cmp-1",
        kind="comparison",
        source="reproduced",
        model=ModelInfo(name="CheXagent vs BLIP-2"),
        run_card=run_card(),
        comparison={
            "run_a": "run-blip",
            "run_b": "run-chexagent",
            "rows": [
                {
                    "subtask": name,
                    "metric": "acc_chexbench",
                    "delta": -0.123,
                    "ci": [-0.2, -0.04],
                    "p": 0.01,
                    "p_holm": 0.02,
                    "test": "mcnemar",
                }
            ],
        },
    )
    write_results(root / "comparison.json", comparison)
    (root / "bad_schema.json").write_text(json.dumps({"run_id": "x", "source": "paper"}))
    (root / "broken.json").write_text("{not json")
    return root


def bundle(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def valid_bundle_members(
    model: str = "MyModel",
    run_id: str = "my-run",
    n: int = 5,
    question: str | None = None,
    **changes: object,
) -> dict[str, bytes]:
    """A submittable bundle: one perception subtask whose n and accuracy come from its rows.
    `question` replaces every row's question; `changes` override fields of the results JSON
    (e.g. source="reproduced")."""
    rows = sample_rows(VIEW_MIMIC, n, 3, None)
    for row in rows if question is not None else ():
        row["question"] = question
    acc = float(np.mean([r["correct"] for r in rows]))
    results = perception_results(
        run_id,
        model,
        {VIEW_MIMIC: (acc, max(0.0, acc - 0.2), min(1.0, acc + 0.2))},
        source="submitted",
        samples_file=f"{run_id}.samples.jsonl",
        n=n,
    )
    obj = results.model_dump(mode="json") | changes
    return {
        f"{run_id}.json": json.dumps(obj).encode(),
        f"{run_id}.samples.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
    }
