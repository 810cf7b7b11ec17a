"""The shipped demo model (`chexagent demo-train` -> chexagent/assets/demo-model), measured
through `chexbench run` on a phantom benchmark it never saw (a fresh seed, test-split patients):
view classification >= 90%, binary disease classification >= 80%, and every perception subtask
above chance by a 95% CI that excludes it; the random smoke model stays at chance."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

from chexagent.demo import DEMO_MODEL_DIR
from chexagent.modeling import build_model, is_chexagent_checkpoint
from harness.cli import main

phantom = pytest.importorskip("harness.phantom")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def fresh_test(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom-test")
    return phantom.generate_phantom(
        out, n_per_pair=20, seed=123, image_size=128, split="test", n_text=0, n_fairness=0
    ).data_json


def _run(data_json, pretrained: str, out) -> tuple[dict, dict[str, float]]:
    """`chexbench run` on the perception tasks: (results.json, chance level per subtask)."""
    assert (
        main(
            [
                "run",
                "--model",
                "chexagent",
                "--model-args",
                f"pretrained={pretrained},dtype=float32,device=cpu",
                "--data",
                str(data_json),
                "--tasks",
                "chexbench_perception",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    (path,) = out.glob("*/results.json")
    chance: dict[str, list[float]] = defaultdict(list)
    for line in (path.parent / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        chance[row["task"]].append(1 / len(row["options"]))
    return json.loads(path.read_text()), {k: sum(v) / len(v) for k, v in chance.items()}


def _headline(block: dict) -> dict:
    return block["metrics"][block.get("headline", "acc_chexbench")]


def test_demo_model_beats_chance_on_every_subtask_through_chexbench_run(fresh_test, tmp_path):
    assert is_chexagent_checkpoint(DEMO_MODEL_DIR), "run `chexagent demo-train` to build it"
    results, chance = _run(fresh_test, str(DEMO_MODEL_DIR), tmp_path / "demo")
    groups = results["groups"]
    assert _headline(groups["chexbench_view_classification"])["value"] >= 0.90, groups
    assert _headline(groups["chexbench_binary_disease_classification"])["value"] >= 0.80, groups
    assert len(results["subtasks"]) == 14
    for name, sub in results["subtasks"].items():
        low, _ = _headline(sub)["ci"]
        assert low > chance[name], (name, _headline(sub), chance[name])


def test_smoke_model_stays_at_chance_through_chexbench_run(fresh_test, tmp_path):
    results, chance = _run(fresh_test, "smoke", tmp_path / "smoke")
    overall = _headline(results["groups"]["chexbench_perception"])
    mean_chance = sum(chance.values()) / len(chance)
    assert overall["ci"][0] <= mean_chance + 0.05, (overall, mean_chance)
    covered = sum(_headline(s)["ci"][0] <= chance[k] for k, s in results["subtasks"].items())
    assert covered >= 12, results["subtasks"]  # at most a couple of lucky subtasks


def test_vision_warmup_learns_image_labels_in_the_vit_and_the_qformer(tmp_path):
    """The demo's stand-in for a pretrained ViT + Q-Former: multi-label targets are the phantom
    processor's structured labels (sides and sizes as labels of their own), and a few steps
    lower both heads' losses while changing only the ViT, the Q-Former and its queries."""
    from chexagent.instruct.processors.phantom import process
    from chexagent.training.config import VisionWarmupConfig
    from chexagent.training.vision_warmup import label_targets, warm_up_vision

    phantom.generate_phantom(
        tmp_path, n_per_pair=4, seed=5, image_size=64, split="train", n_text=0, n_fairness=0
    )
    instances = list(process(tmp_path, seed=0))
    paths, vocab, targets = label_targets(instances, min_count=2)
    assert {"pa view", "cardiomegaly", "pleural effusion: left"} <= set(vocab)
    assert targets.shape == (len(paths), len(vocab))
    assert targets.sum(1).min() >= 1  # every image has at least its view
    bundle = build_model("tiny", seed=0)
    model = bundle.model
    frozen = {
        **{f"lm.{k}": v.clone() for k, v in model.language_model.state_dict().items()},
        **{f"bridge.{k}": v.clone() for k, v in model.language_projection.state_dict().items()},
    }
    vit_before = model.vision_model.embeddings.patch_embedding.weight.clone()
    cross_before = model.qformer.encoder.layer[0].crossattention.attention.query.weight.clone()
    queries_before = model.query_tokens.clone()
    log = warm_up_vision(
        bundle,
        instances,
        VisionWarmupConfig(lr_peak=1e-3, warmup_steps=3, batch=16, max_steps=30, min_count=2),
        show_progress=False,
    )
    for part in ("vit", "query"):
        assert sum(r[part] for r in log[-5:]) < sum(r[part] for r in log[:5]), part
    assert not torch.equal(vit_before, model.vision_model.embeddings.patch_embedding.weight)
    assert not torch.equal(
        cross_before, model.qformer.encoder.layer[0].crossattention.attention.query.weight
    )
    assert not torch.equal(queries_before, model.query_tokens)
    after = {
        **{f"lm.{k}": v for k, v in model.language_model.state_dict().items()},
        **{f"bridge.{k}": v for k, v in model.language_projection.state_dict().items()},
    }
    for k, v in frozen.items():
        assert torch.equal(v, after[k]), k
    warmed = [*model.vision_model.parameters(), *model.qformer.parameters(), model.query_tokens]
    assert not any(p.requires_grad for p in warmed)  # left frozen: each stage picks its own
