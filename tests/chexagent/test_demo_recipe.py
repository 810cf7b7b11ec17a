"""`chexagent demo-train`'s pipeline end to end on a shrunken copy of the shipped recipe (tiny
arch, a few steps per stage): phantom train/test splits, the leakage-guarded CheXinstruct, the
vision warm-up, stages 0-3 each starting from the last, a loadable checkpoint and its scores;
a rerun of the same recipe reuses every finished step and gives the same weights, and a changed
recipe starts over."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from chexagent.cli import main
from chexagent.modeling import is_chexagent_checkpoint
from chexagent.training.config import load_config

pytest.importorskip("deepspeed", reason="stages 0 and 3 of the recipe run on DeepSpeed ZeRO-2")
pytest.importorskip("harness.phantom")

STEPS = ("phantom-train", "phantom-test", "chexinstruct", "stage0", "stage1", "stage2", "stage3")


pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]


@pytest.fixture
def shrunken_recipe(tmp_path):
    """The shipped `demo` recipe with the tiny arch and 3 steps per stage."""
    cfg = load_config("demo")
    stages = {
        k: s.model_copy(
            update={"max_steps": 3, "warmup_steps": 1, "global_batch": 4, "micro_batch": 4}
        ).model_dump(mode="json")
        for k, s in cfg.stages.items()
    }
    warmup = cfg.vision_warmup.model_copy(
        update={"max_steps": 3, "warmup_steps": 1, "batch": 8, "min_count": 2}
    )
    path = tmp_path / "demo-small.yaml"
    path.write_text(
        yaml.safe_dump(
            {"arch": "tiny", "seed": 0, "stages": stages, "vision_warmup": warmup.model_dump()}
        )
    )
    return path


def _demo_train(work, out, config, seed: int = 0) -> dict:
    assert (
        main(
            [
                "demo-train",
                "--work",
                str(work),
                "--output",
                str(out),
                "--seed",
                str(seed),
                "--n-per-pair",
                "3",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    return json.loads((work / "demo_summary.json").read_text())


def test_demo_train_runs_every_step_and_a_rerun_reuses_them(tmp_path, shrunken_recipe):
    work, out = tmp_path / "work", tmp_path / "model"
    first = _demo_train(work, out, shrunken_recipe)
    assert first["reused_steps"] == []
    assert is_chexagent_checkpoint(out)
    marker = json.loads((out / "chexagent.json").read_text())
    assert marker["recipe"] == "chexagent demo-train" and marker["trained_stage"] == 3
    assert marker["config"] == "demo-small" and marker["n_per_pair"] == 3
    assert len(first["test_accuracy"]) == 14  # every perception task/dataset pair scored
    assert all(0 <= r["accuracy"] <= 1 and r["n"] > 0 for r in first["test_accuracy"].values())
    assert first["build"]["stage3_drawn"] > 0
    assert {int(k) for k in first["stage_losses"]} == {0, 1, 2, 3}
    assert all(v["steps"] == 3 for v in first["stage_losses"].values())
    warm = json.loads((work / "vision_warmup.json").read_text())
    assert warm["config"]["max_steps"] == 3
    weights = load_file(out / "model.safetensors")

    again = _demo_train(work, tmp_path / "model-again", shrunken_recipe)
    assert again["reused_steps"] == sorted(STEPS)
    rebuilt = load_file(tmp_path / "model-again" / "model.safetensors")
    assert rebuilt.keys() == weights.keys()
    assert all(torch.equal(rebuilt[k], weights[k]) for k in weights)
    assert again["test_accuracy"] == first["test_accuracy"]

    other = _demo_train(work, tmp_path / "model-seed1", shrunken_recipe, seed=1)
    assert other["reused_steps"] == []  # a changed recipe never reuses the old steps
