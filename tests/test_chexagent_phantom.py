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
    train = phantom.generate_phantom(base / "train", n_per_pair=2, seed=1, image_size=64,
                                     split="train", n_text=2, n_fairness=0)
    test = phantom.generate_phantom(base / "test", n_per_pair=2, seed=0, image_size=64,
                                    split="test", n_text=0, n_fairness=0)
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
    summary = build(out, {"phantom": train.out_dir}, benchmarks=[test.data_json],
                    ratio_overrides=PHANTOM_RATIOS)
    assert summary["leakage_removed"] == 0  # train patients are disjoint from test
    assert summary["stage3_train"] == summary["instances"]
    # plant one test image inside the train folder under its own name: removed by content
    item = load_data(test.data_json).perception[0]
    victim = next(i for i in InstanceStore(out / "instances") if i.task == "ViewClassification")
    shutil.copyfile(test.out_dir / item.image_paths[0], victim.images[0])
    summary2 = build(tmp_path / "ci2", {"phantom": train.out_dir}, benchmarks=[test.data_json],
                     ratio_overrides=PHANTOM_RATIOS)
    assert summary2["leakage_removed"] >= 1
    kept = {p for i in InstanceStore(tmp_path / "ci2" / "stage3-train") for p in i.images}
    assert victim.images[0] not in kept
