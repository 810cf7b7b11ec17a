"""The phantom CheXbench: deterministic, complete, and every label traceable to its pixels."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from harness.cli import main
from harness.data import load_data
from harness.phantom import FAIRNESS_QUESTION, Disparity, Findings, generate_phantom
from harness.phantom.render import render
from harness.taxonomy import PERCEPTION_SUBTASKS, SUBTASK_BY_NAME

N = 8  # items per pair: a multiple of 4 so answer positions balance exactly
SIZE = 64
SMALL = dict(n_per_pair=N, image_size=SIZE, n_text=5, n_fairness=40)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _truth(res) -> dict[str, dict]:
    rows = [json.loads(line) for line in res.truth_jsonl.read_text().splitlines()]
    return {r["image_path"]: r for r in rows}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("phantom"), seed=0, **SMALL)


def test_same_arguments_give_byte_identical_files_and_seeds_differ(phantom, tmp_path):
    again = generate_phantom(tmp_path / "again", seed=0, **SMALL)
    first, second = _files(phantom.out_dir), _files(again.out_dir)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    other = generate_phantom(tmp_path / "other", seed=1, **SMALL)
    assert other.data_json.read_bytes() != phantom.data_json.read_bytes()
    a = np.asarray(
        Image.open(
            phantom.out_dir
            / json.loads(phantom.data_json.read_text())["View Classification"][0]["image_path"]
        )
    )
    b = np.asarray(
        Image.open(
            other.out_dir
            / json.loads(other.data_json.read_text())["View Classification"][0]["image_path"]
        )
    )
    assert not np.array_equal(a, b)


def test_another_process_with_other_string_hashing_writes_the_same_bytes(phantom, tmp_path):
    """Python salts str hashes per process, so anything that iterates a set of labels would
    draw different studies in a new process (seen: `make demo` data changing between runs)."""
    import subprocess
    import sys

    code = (
        "import sys; from harness.phantom import generate_phantom; "
        f"generate_phantom(sys.argv[1], seed=0, **{SMALL!r})"
    )
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / salt)], check=True, env=env)
        again = _files(tmp_path / salt)
        assert [k for k, v in _files(phantom.out_dir).items() if again.get(k) != v] == []


def test_all_pairs_and_text_tasks_load_with_balanced_answers(phantom):
    data = load_data(phantom.data_json)
    for sub in PERCEPTION_SUBTASKS:
        items = data.items_for(sub)
        assert len(items) == N, sub.name
        if sub.paper_options == "4":
            assert Counter(i.answer for i in items) == {0: 2, 1: 2, 2: 2, 3: 2}, sub.name
        if sub.paper_options == "2":
            assert {len(i.options) for i in items} == {2}
    rad = data.items_for(SUBTASK_BY_NAME["chexbench_visual_question_answering_rad_restruct"])
    assert {len(i.options) for i in rad} >= {2, 3}
    assert any(len(i.image_paths) == 2 for i in data.perception)  # frontal|lateral studies
    gen = [t for t in data.text if t.task == "findings_generation"]
    summ = [t for t in data.text if t.task == "findings_summarization"]
    assert len(gen) == len(summ) == 5
    assert all(t.indication and t.findings and 1 <= len(t.image_paths) <= 2 for t in gen)
    assert all(t.findings and t.impression for t in summ)
    for path in (phantom.out_dir / p for i in data.perception for p in i.image_paths):
        with Image.open(path) as im:
            assert im.size == (SIZE, SIZE) and im.mode == "L"


def test_every_answer_matches_the_drawn_attributes(phantom):
    data = load_data(phantom.data_json)
    truth = _truth(phantom)
    view_names = {"AP": "AP", "PA": "PA", "LATERAL": "Lateral", "LL": "LL"}
    for item in data.perception:
        rows = [truth[p] for p in item.image_paths]
        findings = set(rows[0]["findings"])
        answer = item.options[item.answer]
        if item.task == "view_classification":
            assert answer == view_names[rows[0]["view"]]
        elif item.task == "binary_disease_classification":
            target = item.question.removeprefix("Does this chest X-ray contain ").rstrip("?")
            assert (answer == "Yes") == (target in findings), item.item_id
        elif item.task == "single_disease_identification":
            assert answer in findings
            assert not any(o in findings for i, o in enumerate(item.options) if i != item.answer)
        elif item.task == "multi_disease_identification":
            assert set(answer.split(", ")) == findings
            assert all(
                set(o.split(", ")) != findings
                for i, o in enumerate(item.options)
                if i != item.answer
            )
        assert item.cluster_id == rows[0]["patient_id"]
    for row in truth.values():
        assert (row["ctr"] > 0.5) == ("cardiomegaly" in row["findings"])


def test_report_text_follows_the_attributes(phantom):
    data = json.loads(phantom.data_json.read_text())
    truth = _truth(phantom)
    for task in ("Findings Generation", "Findings Summarization"):
        for item in data[task]:
            row = truth[item["image_path"][0]]
            text = item["section_findings"]
            assert ("enlarged" in text) == ("cardiomegaly" in row["findings"])
            has_effusion = "pleural effusion" in row["findings"]
            assert (
                "No pleural effusion" not in text and "no pleural effusion" not in text
            ) == has_effusion
            if has_effusion:
                assert row["details"]["effusion"] in text
            if "pneumothorax" in row["findings"]:
                assert f"{row['details']['pneumothorax']} pneumothorax" in text
            if task == "Findings Summarization":
                impression = item["section_impression"]
                assert ("cardiomegaly" in impression) == ("cardiomegaly" in row["findings"])
                acute = set(row["findings"]) - {"no finding", "support devices"}
                assert ("No acute cardiopulmonary process" in impression) == (not acute)


def test_views_have_distinct_geometry():
    size = 128

    def heart_width(im: np.ndarray) -> float:
        row = im[int(0.6 * size) - 1 : int(0.6 * size) + 2].mean(0)
        inner = row[size // 10 : 9 * size // 10]
        threshold = (np.percentile(inner, 20) + np.percentile(inner, 90)) / 2
        left = right = size // 2
        while left > 0 and row[left] > threshold:
            left -= 1
        while right < size - 1 and row[right] > threshold:
            right += 1
        return (right - left) / size

    def edge_ratio(im: np.ndarray) -> float:  # body reaches the film edges only on frontals
        band = im[int(0.4 * size) : int(0.6 * size)]
        return np.r_[band[:, :8].ravel(), band[:, -8:].ravel()].mean() / im.mean()

    def spine_side(im: np.ndarray) -> float:  # posterior spine: right on LATERAL, left on LL
        band = im[int(0.3 * size) : int(0.7 * size)]
        return (
            band[:, int(0.78 * size) : int(0.86 * size)].mean()
            - band[:, int(0.14 * size) : int(0.22 * size)].mean()
        )

    imgs = {
        v: [
            render(
                Findings(ctr=0.45),
                v,
                size,
                female=i % 2 == 0,
                hard=0.0,
                rng=np.random.default_rng(i),
            ).astype(float)
            for i in range(12)
        ]
        for v in ("PA", "AP", "LATERAL", "LL")
    }
    # AP magnifies the heart: at the same CTR every AP heart is wider than every PA heart.
    assert max(map(heart_width, imgs["PA"])) < min(map(heart_width, imgs["AP"]))
    frontal = [edge_ratio(im) for v in ("PA", "AP") for im in imgs[v]]
    lateral = [edge_ratio(im) for v in ("LATERAL", "LL") for im in imgs[v]]
    assert min(frontal) > 2 * max(lateral)
    assert min(map(spine_side, imgs["LATERAL"])) > 0 > max(map(spine_side, imgs["LL"]))


def test_heart_width_follows_the_cardiothoracic_ratio():
    size = 128
    ctrs = np.linspace(0.4, 0.65, 12)
    widths = []
    for i, ctr in enumerate(ctrs):
        im = render(
            Findings(ctr=float(ctr)),
            "PA",
            size,
            female=False,
            hard=0.0,
            rng=np.random.default_rng(i),
        ).astype(float)
        row = im[int(0.6 * size) - 1 : int(0.6 * size) + 2].mean(0)
        inner = row[size // 10 : 9 * size // 10]
        widths.append(
            int((inner > (np.percentile(inner, 20) + np.percentile(inner, 90)) / 2).sum())
        )
    assert spearmanr(ctrs, widths).statistic > 0.9


def test_train_and_test_splits_share_no_patient_or_image(phantom, tmp_path):
    train = generate_phantom(tmp_path / "train", seed=0, split="train", **SMALL)
    test_rows, train_rows = _truth(phantom), _truth(train)
    assert not set(test_rows) & set(train_rows)
    assert not (
        {r["patient_id"] for r in test_rows.values()}
        & {r["patient_id"] for r in train_rows.values()}
    )
    assert {r["split"] for r in train_rows.values()} == {"train"}


def test_fairness_set_and_demographics(phantom):
    fair = load_data(phantom.fairness_json)
    assert len(fair.perception) == 40
    assert {i.dataset for i in fair.perception} == {"chexpert"}
    assert {i.question for i in fair.perception} == {FAIRNESS_QUESTION}
    assert {tuple(i.options) for i in fair.perception} == {("Yes", "No")}
    patients = [i.cluster_id for i in fair.perception]
    assert len(set(patients)) == len(patients)
    truth = _truth(phantom)
    for item in fair.perception:
        row = truth[item.image_paths[0]]
        assert row["view"] in ("PA", "AP")
        assert set(row["findings"]) <= {"no finding", "cardiomegaly"}
        assert (item.answer == 0) == ("cardiomegaly" in row["findings"])
    with open(phantom.demographics_csv, newline="") as f:
        demo = {r["patient_id"]: r for r in csv.DictReader(f)}
    assert set(patients) <= set(demo)
    assert {r["patient_id"] for r in truth.values()} == set(demo)
    assert not any(r["hard"] for r in truth.values())  # no disparity: no subgroup differs


def test_disparity_marks_exactly_the_chosen_subgroup_and_makes_it_harder(tmp_path):
    res = generate_phantom(
        tmp_path / "d",
        seed=0,
        n_per_pair=1,
        image_size=SIZE,
        n_text=0,
        n_fairness=60,
        disparity=Disparity("race", "Black", 0.8),
    )
    rows = list(_truth(res).values())
    assert any(r["hard"] for r in rows) and not all(r["hard"] for r in rows)
    assert all(r["hard"] == (r["race"] == "Black") for r in rows)
    fair = {i.image_paths[0] for i in load_data(res.fairness_json).perception}
    hard = [r for r in rows if r["hard"] and r["image_path"] in fair]
    easy = [r for r in rows if not r["hard"] and r["image_path"] in fair]

    def mean(values) -> float:
        return float(np.mean(list(values)))

    # CTR pulled towards the threshold, and flatter, noisier films.
    assert mean(abs(r["ctr"] - 0.5) for r in hard) < 0.5 * mean(abs(r["ctr"] - 0.5) for r in easy)

    def contrast(r) -> float:
        im = np.asarray(Image.open(res.out_dir / r["image_path"]), dtype=float)
        return float(np.percentile(im, 95) - np.percentile(im, 5))

    assert mean(map(contrast, hard)) < 0.8 * mean(map(contrast, easy))
    manifest = json.loads(res.manifest.read_text())
    assert manifest["disparity"] == {"attribute": "race", "group": "Black", "strength": 0.8}
    assert Disparity.parse("sex=female:0.3") == Disparity("sex", "female", 0.3)
    with pytest.raises(ValueError, match="group"):
        Disparity.parse("race=Martian:0.5")


def test_refused_phantom_settings_are_one_line_exit_2(tmp_path, capsys):
    """The generator's own refusals are user errors at the source (the command no longer
    turns every ValueError into one)."""
    assert main(["phantom", "--image-size", "16", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image_size must be between 32") and err.count("\n") == 1
    (tmp_path / "b" / "data").mkdir(parents=True)  # someone else's folder
    assert main(["phantom", "--n-per-pair", "1", "-o", str(tmp_path / "b")]) == 2
    assert "not written by the phantom generator" in capsys.readouterr().err
