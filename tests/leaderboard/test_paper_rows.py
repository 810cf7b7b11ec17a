"""The paper rows in results/paper, checked against the paper's own text; and the builders of
the results folders the other leaderboard tests use."""

from __future__ import annotations

import functools
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_schema import MetricValue, ModelInfo, Results, RunCard, SubtaskResult
from harness.taxonomy import PERCEPTION_SUBTASKS, subtask_for
from leaderboard.loader import PAPER, load_folder

REPO = Path(__file__).resolve().parents[1]
PAPER_DIR = REPO / "results" / "paper"
PAPER_TEXT = REPO.parent / "shared" / "seeds" / "chexagent-paper.txt"
TABLE2_MODELS = ["BLIP-2", "InstructBLIP", "XrayGPT", "MedFlamingo", "RadFM", "LLaVA-Med",
                 "CheXagent"]
_NUMBERS7 = re.compile(r"^(.*?)((?:\s+\d+\.\d){7})\s*$")
_TABLE34 = re.compile(r"^(\S+) (\d+B)((?: \d+\.\d){6}) (\S+) (\d+B) (\d+\.\d)$")


# ---------------------------------------------------------------- builders (used elsewhere)

def run_card(synthetic: bool = False) -> RunCard:
    return RunCard(harness_version="0.1.0", harness_commit="abc1234",
                   packages={"torch": "2.13.0"}, command=["chexbench", "run"],
                   created_at="2026-01-01T00:00:00+00:00", seed=1234,
                   bootstrap={"B": 1000, "seed": 1234, "unit": "cluster"}, synthetic=synthetic)


def perception_results(run_id: str, model: str, accs: dict[str, tuple[float, float, float]],
                       source: str = "reproduced", samples_file: str | None = None,
                       synthetic: bool = False, model_id: str | None = None) -> Results:
    """accs: subtask name -> (value, ci_lo, ci_hi)."""
    subtasks = {}
    for name, (value, lo, hi) in accs.items():
        sub = next(s for s in PERCEPTION_SUBTASKS if s.name == name)
        subtasks[name] = SubtaskResult(
            name=name, task=sub.task.slug, dataset=sub.dataset.slug, kind="perception", n=20,
            headline="acc_chexbench",
            metrics={"acc_chexbench": MetricValue(value=value, ci=(lo, hi),
                                                  ci_method="percentile-bootstrap/cluster", n=20),
                     "acc": MetricValue(value=value - 0.05, n=20)})
    return Results(run_id=run_id, source=source, model=ModelInfo(name=model, model_id=model_id),
                   run_card=run_card(synthetic), subtasks=subtasks, samples_file=samples_file)


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
        rows.append({"task": task, "item_id": f"view_classification/{i}", "doc_id": i,
                     "dataset": "mimic_cxr", "cluster_id": f"p{i // 2}",
                     "question": f"What is the view of this chest X-ray? (item {i})",
                     "options": ["AP", "PA", "Lateral", "LL"], "answer": answer,
                     "image_paths": [image] if image else [], "logprobs": logprobs,
                     "token_counts": counts, "prediction": pred, "correct": pred == answer})
    return rows


def write_results(path: Path, results: Results) -> Path:
    atomic_write_json(path, results.model_dump(mode="json"))
    return path


def build_folder(root: Path, with_extras: bool = True) -> Path:
    """A results folder: the shipped paper rows plus, with extras, two local runs with samples
    (one CheXagent reproduction), judge / fairness / comparison files, a demo run and two bad
    files."""
    (root / "paper").mkdir(parents=True)
    for src in PAPER_DIR.glob("*.json"):
        (root / "paper" / src.name).write_bytes(src.read_bytes())
    if not with_extras:
        return root
    runs = root / "runs"
    runs.mkdir()
    Image.new("L", (64, 64), 128).save(runs / "cxr.png")
    name = "chexbench_view_classification_mimic_cxr"
    rows_a = sample_rows(name, 20, 1, "cxr.png")
    rows_b = sample_rows(name, 20, 2, None)
    atomic_write_jsonl(runs / "chexagent.samples.jsonl", rows_a)
    atomic_write_jsonl(runs / "blip.samples.jsonl", rows_b)
    acc_a = float(np.mean([r["correct"] for r in rows_a]))
    acc_b = float(np.mean([r["correct"] for r in rows_b]))
    write_results(runs / "chexagent.json", perception_results(
        "run-chexagent", "CheXagent", {name: (acc_a, acc_a - 0.1, acc_a + 0.1)},
        samples_file="chexagent.samples.jsonl", model_id="StanfordAIMI/CheXagent-8b"))
    write_results(runs / "blip.json", perception_results(
        "run-blip", "BLIP-2", {name: (acc_b, acc_b - 0.1, acc_b + 0.1)},
        samples_file="blip.samples.jsonl"))
    write_results(root / "demo.json", perception_results(
        "demo-run", "DemoModel", {name: (0.9, 0.8, 0.95)}, source="demo", synthetic=True))
    judge = Results(run_id="judge-1", kind="judge", source="reproduced",
                    model=ModelInfo(name="gpt-4o (judge)"), run_card=run_card(), judge={
                        "judge_model": "gpt-4o", "pairs": [{
                            "model_a": "CheXagent", "model_b": "XrayGPT",
                            "task": "findings_generation", "n": 152,
                            "win": {"value": 0.59, "ci": [0.51, 0.67]},
                            "tie": {"value": 0.28, "ci": [0.21, 0.35]},
                            "loss": {"value": 0.13, "ci": [0.08, 0.19]},
                            "position_flip_rate": 0.07, "unparseable": 0}]})
    write_results(root / "judge.json", judge)
    fairness = Results(run_id="fair-1", kind="fairness", source="reproduced",
                       model=ModelInfo(name="CheXagent"), run_card=run_card(), fairness={
                           "task": "cardiomegaly", "protocol": "balanced-bootstrap", "B": 2000,
                           "seed": 1234, "attributes": {
                               "sex": {"groups": {
                                   "female": {"f1_mean": 0.71, "f1_std": 0.04, "n_subjects": 70,
                                              "n_items": 400},
                                   "male": {"f1_mean": 0.78, "f1_std": 0.03, "n_subjects": 89,
                                            "n_items": 400}},
                                   "gap": {"value": 0.07, "ci": [0.01, 0.13]}}},
                           "warnings": []})
    write_results(root / "fairness.json", fairness)
    comparison = Results(run_id="cmp-1", kind="comparison", source="reproduced",
                         model=ModelInfo(name="CheXagent vs BLIP-2"), run_card=run_card(),
                         comparison={"run_a": "run-blip", "run_b": "run-chexagent", "rows": [{
                             "subtask": name, "metric": "acc_chexbench", "delta": -0.123,
                             "ci": [-0.2, -0.04], "p": 0.01, "p_holm": 0.02,
                             "test": "mcnemar"}]})
    write_results(root / "comparison.json", comparison)
    (root / "bad_schema.json").write_text(json.dumps({"run_id": "x", "source": "paper"}))
    (root / "broken.json").write_text("{not json")
    return root


def bundle(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def valid_bundle_members(model: str = "MyModel", run_id: str = "my-run") -> dict[str, bytes]:
    name = "chexbench_view_classification_mimic_cxr"
    rows = sample_rows(name, 5, 3, None)
    results = perception_results(run_id, model, {name: (0.6, 0.5, 0.7)}, source="submitted",
                                 samples_file=f"{run_id}.samples.jsonl")
    return {f"{run_id}.json": json.dumps(results.model_dump(mode="json")).encode(),
            f"{run_id}.samples.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode()}


# ---------------------------------------------------------------- the paper rows

@functools.cache
def _paper_rows() -> dict[str, Results]:
    loaded = load_folder(PAPER_DIR)
    assert not loaded.rejected, loaded.rejected
    return {e.results.model.name: e.results for e in loaded.entries}


def _paper(model: str) -> Results:
    return _paper_rows()[model]


def test_paper_rows_are_valid_and_cited():
    loaded = load_folder(PAPER_DIR)
    assert not loaded.rejected
    assert {e.results.model.name for e in loaded.entries} >= set(TABLE2_MODELS)
    for entry in loaded.entries:
        assert entry.provenance == PAPER
        assert entry.results.run_card is None
        assert re.search(r"Table [234] \(p\. \d+\)", entry.results.citation or "")
    for model in TABLE2_MODELS:
        subs = _paper(model).subtasks
        assert {s.name for s in PERCEPTION_SUBTASKS} <= set(subs)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not at {PAPER_TEXT}")
def test_table2_matches_the_paper_text():
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("6Table2:"))
    header = next(line for line in lines[start:] if line.startswith("BLIP-2"))
    assert header.split()[:6] == TABLE2_MODELS[:6]
    rows = []
    for line in lines[start:start + 30]:
        match = _NUMBERS7.match(line)
        if match:
            rows.append((match.group(1).split()[-1], [float(x) for x in match.group(2).split()]))
    assert len(rows) == 14
    for sub, (dataset, numbers) in zip(PERCEPTION_SUBTASKS, rows, strict=True):
        assert dataset == sub.dataset.title
        for model, printed in zip(TABLE2_MODELS, numbers, strict=True):
            got = _paper(model).subtasks[sub.name].metrics["acc_chexbench"].value
            assert got == pytest.approx(printed / 100, abs=1e-9), (model, sub.name)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not at {PAPER_TEXT}")
def test_tables_3_and_4_match_the_paper_text():
    rows = [m for line in PAPER_TEXT.read_text(encoding="utf-8").splitlines()
            if (m := _TABLE34.match(line))]
    assert len(rows) == 5
    gen_private = subtask_for("findings_generation", "private").name
    gen_mimic = subtask_for("findings_generation", "mimic_cxr").name
    summ = subtask_for("findings_summarization", "mimic_cxr").name
    metrics = ["bertscore_paper", "chexbert_score_paper", "radgraph_score_paper"]
    for m in rows:
        numbers = [float(x) for x in m.group(3).split()]
        subs = _paper(m.group(1)).subtasks
        for i, metric in enumerate(metrics):
            assert subs[gen_private].metrics[metric].value == pytest.approx(numbers[i] / 100)
            assert subs[gen_mimic].metrics[metric].value == pytest.approx(numbers[3 + i] / 100)
        rouge = _paper(m.group(4)).subtasks[summ].metrics["rougeL"].value
        assert rouge == pytest.approx(float(m.group(6)) / 100)
