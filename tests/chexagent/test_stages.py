"""The four training stages on the tiny config: loss goes down, each stage trains exactly the
parts Table 8 / section 4.2 say, and stage 3 scores answer tokens only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chexagent.forward import lm_logits, next_token_loss
from chexagent.instruct.schema import Instance
from chexagent.modeling import build_model, load_bundle
from chexagent.prompting import IGNORE_INDEX, build_inputs
from chexagent.training.config import load_config
from chexagent.training.data import ImageLoader, collate_prompted
from chexagent.training.parts import has_lora
from chexagent.training.trainer import StageObjective, StageTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> list[Instance]:
    """Eight images, two classes (a bright square or not), captions and yes/no questions."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    out = []
    for i in range(8):
        arr = (rng.random((32, 32)) * 60).astype("uint8")
        sick = i % 2 == 1
        if sick:
            arr[8:24, 8:24] = 255
        path = root / f"{i}.png"
        Image.fromarray(arr).save(path)
        common = {"dataset": "Phantom", "split": "train", "images": [str(path)]}
        out.append(
            Instance(
                instance_id=f"p/{i}/cap",
                task="FindingsGeneration",
                question="Describe the findings of this chest X-ray.",
                answer="cardiomegaly." if sick else "no finding.",
                template_format="findings_generation",
                template_index=1,
                **common,
            )
        )
        out.append(
            Instance(
                instance_id=f"p/{i}/bin",
                task="ImageClassification",
                question="Does this chest X-ray contain cardiomegaly?",
                answer="Yes" if sick else "No",
                options=["Yes", "No"],
                template_format="disease_binary",
                template_index=0,
                **common,
            )
        )
    return out


def stage_cfg(stage: int, steps: int = 6, batch: int = 8):
    cfg = load_config("tiny").stages[stage]
    return cfg.model_copy(
        update={"max_steps": steps, "micro_batch": batch, "global_batch": batch, "warmup_steps": 1}
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_stage_loss_decreases(stage, instances, tmp_path):
    bundle = build_model("tiny", seed=0, qformer_text_input=True)
    trainer = StageTrainer(
        stage, stage_cfg(stage), bundle, instances, tmp_path, seed=0, show_progress=False
    )
    result = trainer.train()
    losses = result.losses
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.05, losses
    # the exported checkpoint is a plain BLIP-2 checkpoint that loads without peft or heads
    reloaded = load_bundle(result.model_dir)
    assert not has_lora(reloaded.model)


def test_stage2_leaves_vision_and_lm_bit_identical(instances, tmp_path):
    bundle = build_model("tiny", seed=0, qformer_text_input=True)
    model = bundle.model
    frozen = {"vision": model.vision_model, "qformer": model.qformer, "lm": model.language_model}
    before = {name: _snapshot(m) for name, m in frozen.items()}
    proj_before = _snapshot(model.language_projection)
    StageTrainer(2, stage_cfg(2, steps=3), bundle, instances, tmp_path, show_progress=False).train(
        export=False
    )
    for name, module in frozen.items():
        after = module.state_dict()
        assert all(torch.equal(before[name][k], after[k]) for k in after), name
    assert torch.equal(model.query_tokens, model.query_tokens)  # unchanged below
    changed = [
        not torch.equal(proj_before[k], v)
        for k, v in model.language_projection.state_dict().items()
    ]
    assert all(changed)


def test_stage1_trains_lora_on_vision_only(instances, tmp_path):
    bundle = build_model("tiny", seed=0, qformer_text_input=True)
    trainer = StageTrainer(
        1, stage_cfg(1, steps=2), bundle, instances, tmp_path, show_progress=False
    )
    model = bundle.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert lora and all(n.startswith("vision_model.") for n in lora)
    assert not any(
        "lora_" in n for n, _ in model.named_parameters() if not n.startswith("vision_model.")
    )
    vision_trainable = {n for n in trainable if n.startswith("vision_model.")}
    assert vision_trainable == lora  # the ViT's own weights stay frozen
    assert not any(n.startswith(("language_model.", "language_projection.")) for n in trainable)
    assert any(n.startswith("qformer.") for n in trainable) and "query_tokens" in trainable
    vit_before = {
        k: v.clone() for k, v in model.vision_model.state_dict().items() if "lora_" not in k
    }
    result = trainer.train()
    merged = load_bundle(result.model_dir).model.vision_model.state_dict()
    renamed = {k.replace(".base_layer", ""): v for k, v in vit_before.items()}
    assert set(merged) == set(renamed)
    assert any(not torch.equal(merged[k], renamed[k]) for k in merged)  # LoRA merged in


def test_stage3_loss_ignores_prompt_tokens(instances):
    bundle = build_model("tiny", seed=0)
    tok = bundle.tokenizer
    inst = instances[1]
    batch = collate_prompted(
        tok,
        ImageLoader(bundle.image_processor),
        [inst, instances[3]],
        seq_len=128,
        num_query_tokens=bundle.arch.num_query_tokens,
        max_images=2,
    )
    built = build_inputs(
        tok,
        inst.question,
        inst.answer,
        num_images=1,
        num_query_tokens=bundle.arch.num_query_tokens,
        add_eos=True,
    )
    labels = batch["labels"][0]
    assert (labels[: built.answer_start] == IGNORE_INDEX).all()
    answer_ids = tok(" " + inst.answer, add_special_tokens=False)["input_ids"]
    assert labels[built.answer_start :].tolist()[: len(answer_ids) + 1] == answer_ids + [
        tok.eos_token_id
    ]
    objective = StageObjective(3, bundle, None)
    with torch.no_grad():
        loss = objective(batch)
        logits = lm_logits(
            bundle.model, batch["input_ids"], batch["attention_mask"], batch["pixel_values"]
        )
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none"
        )
        scored = batch["labels"][:, 1:] != IGNORE_INDEX
        manual = ce[scored].mean()
    assert torch.allclose(loss, manual, atol=1e-6)
    # the loss has zero gradient w.r.t. every logit that predicts a prompt (or image) token
    leaf = logits.detach().requires_grad_(True)
    next_token_loss(leaf, batch["labels"]).backward()
    grad_norm = leaf.grad.abs().sum(-1)[:, :-1]  # position t predicts token t+1
    assert (grad_norm[~scored] == 0).all()
    assert (grad_norm[scored] > 0).all()
    n_prompt = int((labels == IGNORE_INDEX).sum())
    assert n_prompt >= bundle.arch.num_query_tokens + len(tok(inst.question)["input_ids"])


def test_torch_backend_resume_continues_loss_curve(instances, tmp_path):
    cfg = stage_cfg(3, steps=4, batch=4)
    full = StageTrainer(
        3, cfg, build_model("tiny", 0), instances, tmp_path / "a", save_every=2, show_progress=False
    ).train(export=False)
    again = StageTrainer(
        3, cfg, build_model("tiny", 0), instances, tmp_path / "a", show_progress=False
    )
    assert again.resume(tag="step-0000002") and again.step == 2
    rest = again.train(export=False)
    assert rest.losses == pytest.approx(full.losses[2:], rel=1e-5)


def test_unknown_config_names_the_choices():
    with pytest.raises(FileNotFoundError, match="demo"):
        load_config("nope")


def test_configs_follow_table8():
    paper = load_config("paper").stages
    assert [paper[s].lr_peak for s in range(4)] == [5e-6, 1e-4, 1e-4, 1e-6]
    assert [paper[s].lr_min for s in range(4)] == [5e-7, 1e-5, 1e-5, 1e-7]
    assert [paper[s].global_batch for s in range(4)] == [2048, 256, 2048, 512]
    assert [paper[s].zero_stage for s in range(4)] == [2, None, None, 2]
    assert paper[0].seq_len == 2048 and paper[3].seq_len == 512
    assert all(paper[s].precision == "bf16" for s in range(4))
    assert Path(load_config("paper").name) == Path("paper")
