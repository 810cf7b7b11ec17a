"""The phantom processor turns a phantom TRAIN split into CheXinstruct instances in the
benchmark's own wording, and the leakage guard keeps the phantom TEST split's images out."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from chexagent.demo import PHANTOM_RATIOS
from chexagent.instruct.build import build
from chexagent.instruct.processors.phantom import process
from chexagent.instruct.store import InstanceStore
from harness.data import load_data

phantom = pytest.importorskip("harness.phantom")


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    base = tmp_path_factory.mktemp("phantom")
    train = phantom.generate_phantom(
        base / "train", n_per_pair=2, seed=1, image_size=64, split="train", n_text=2, n_fairness=0
    )
    test = phantom.generate_phantom(
        base / "test", n_per_pair=2, seed=0, image_size=64, split="test", n_text=0, n_fairness=0
    )
    return train, test


def test_phantom_processor_covers_benchmark_items_and_truth(splits):
    train, _ = splits
    instances = list(process(train.out_dir, 0))
    data = load_data(train.data_json)
    bench = [i for i in instances if i.instance_id.endswith("/benchmark")]
    assert len(bench) == len(data.perception)
    by_item = {i.meta["benchmark_item"]: i for i in bench}
    for item in data.perception:
        inst = by_item[item.item_id]
        assert inst.question == item.question and inst.options == item.options
        assert inst.answer == item.options[item.answer]
    tasks = Counter(i.task for i in instances)
    assert tasks["ViewClassification"] > 0 and tasks["ImageClassification"] > 0
    assert tasks["FindingsGeneration"] > 0  # captions for stages 1-2
    assert all(i.split == "train" for i in instances)
    assert all(p.startswith(str(train.out_dir)) for i in instances for p in i.images)


def test_phantom_build_is_leakage_guarded(splits, tmp_path):
    train, test = splits
    out = tmp_path / "ci"
    summary = build(
        out, {"phantom": train.out_dir}, benchmarks=[test.data_json], ratio_overrides=PHANTOM_RATIOS
    )
    assert summary["leakage_removed"] == 0  # train patients are disjoint from test
    assert summary["stage3_train"] == summary["instances"]
    # plant one test image inside the train folder under its own name: removed by content
    item = load_data(test.data_json).perception[0]
    victim = next(i for i in InstanceStore(out / "instances") if i.task == "ViewClassification")
    shutil.copyfile(test.out_dir / item.image_paths[0], victim.images[0])
    summary2 = build(
        tmp_path / "ci2",
        {"phantom": train.out_dir},
        benchmarks=[test.data_json],
        ratio_overrides=PHANTOM_RATIOS,
    )
    assert summary2["leakage_removed"] >= 1
    kept = {p for i in InstanceStore(tmp_path / "ci2" / "stage3-train") for p in i.images}
    assert victim.images[0] not in kept


def test_truth_rows_give_sided_captions_labels_and_reasoning_that_match_the_truth(splits):
    """Captions and warm-up labels name sides and sizes (frontal images only: a lateral view
    cannot show a side), and every image-text reasoning instance's answer is the true phrase
    while its one distractor flips exactly the attribute the truth fixes."""
    import json

    from harness.phantom.tasks import REASONING_KINDS

    SIDES = ("left", "right")
    train, _ = splits
    truth = {
        json.loads(line)["image_path"]: json.loads(line)
        for line in train.truth_jsonl.read_text().splitlines()
    }
    instances = list(process(train.out_dir, 0))
    by_image = {}
    for inst in instances:
        if inst.images:
            by_image.setdefault(inst.images[0], []).append(inst)
    checked_sides, checked_reasoning, checked_vqa = {True: 0, False: 0}, 0, 0
    for rel, row in truth.items():
        found = by_image[str(train.out_dir / rel)]
        (cap,) = [i for i in found if i.instance_id.endswith("/caption")]
        labels = cap.meta["labels"]
        assert labels[0] == f"{row['view'].lower()} view"
        assert set(row["findings"]) - {"no finding"} <= set(labels)
        details = row["details"]
        frontal = row["view"] in ("PA", "AP")
        sided = {
            details[k]
            for k in (
                "effusion",
                "pneumothorax",
                "consolidation",
                "pneumonia",
                "atelectasis",
                "lesion",
                "elevated_diaphragm",
            )
            if details.get(k) in SIDES
        }
        if sided:
            named = {w for w in SIDES if f" {w} " in f" {cap.answer} "} | {
                label.rsplit(": ", 1)[1] for label in labels if label.endswith(SIDES)
            }
            assert named == (sided if frontal else set()), (cap.answer, labels, details)
            checked_sides[frontal] += 1
        for inst in found:
            if "/vqa-" in inst.instance_id:
                assert frontal and inst.answer in inst.options
                checked_vqa += _vqa_answer_is_true(inst.question, inst.answer, row)
            if "/reasoning-" not in inst.instance_id:
                continue
            assert frontal
            attr = inst.instance_id.rsplit("reasoning-", 1)[1]
            kind = next(k for k in REASONING_KINDS if k.attr == attr)
            value = (
                details.get(attr)
                if attr != "heart"
                else ("mild" if row["ctr"] < 0.56 else "severe")
            )
            assert inst.answer == kind.phrase(value)
            assert sorted(inst.options) == sorted(kind.phrase(v) for v in kind.values)
            checked_reasoning += 1
    assert min(checked_sides.values()) > 0 and checked_reasoning > 0 and checked_vqa > 0


def _vqa_answer_is_true(question: str, answer: str, row: dict) -> int:
    """Check the closed questions whose truth follows from the labels alone (1 when checked)."""
    findings = set(row["findings"])
    lung = {
        "pleural effusion",
        "pneumothorax",
        "consolidation",
        "pneumonia",
        "edema",
        "atelectasis",
        "lung lesion",
    }
    named = {
        "cardiomegaly": "cardiomegaly",
        "pleural effusion": "pleural effusion",
        "pneumothorax": "pneumothorax",
        "a nodule": "lung lesion",
    }
    if "Is the heart enlarged?" in question:
        truth = "cardiomegaly" in findings
    elif "Is the lung healthy?" in question:
        truth = not findings & lung
    elif "Does this image show" in question:
        words = question.split("Does this image show ", 1)[1].split("?")[0]
        truth = named[words] in findings
    else:
        return 0
    assert answer == ("Yes" if truth else "No"), (question, answer, row["findings"])
    return 1
