"""CheXagent is scored in its released layout, by `chexbench run` and by the training package.

The reference below is written from CheXagent-8b's released inputs, with plain transformers and
none of this project's scoring code: the processor tokenises ` USER: <s>{question} ASSISTANT:
<s>` WITH special tokens (so the tokenizer's BOS leads the text), the model's `generate` puts the
image query embeddings before all of it, the option follows after a space, and the option's
tokens are the tail of the tokenised prompt + option (the official `run_likelihood.py` asserts
the same). Its log-probs must equal `chexbench run`'s per option; `chexagent eval` (the layout
stage 3 trains on) must agree too, so training and scoring cannot drift apart again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from chexagent.demo import DEMO_MODEL_DIR
from harness.cli import main

phantom = pytest.importorskip("harness.phantom")
pytestmark = pytest.mark.usefixtures("single_thread")

PROMPT = " USER: <s>{question} ASSISTANT: <s>"  # CheXagent-8b demo.py (official repo, 1eb70b4)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small phantom benchmark scored by `chexbench run` with the shipped demo model."""
    root = tmp_path_factory.mktemp("protocol-chexagent")
    data = phantom.generate_phantom(
        root / "phantom",
        n_per_pair=2,
        seed=31,
        image_size=128,
        split="test",
        n_text=0,
        n_fairness=0,
    ).data_json
    assert (
        main(
            [
                "run",
                "--model",
                "chexagent",
                "--model-args",
                f"pretrained={DEMO_MODEL_DIR},dtype=float32,device=cpu",
                "--data",
                str(data),
                "--tasks",
                "chexbench_perception",
                "--output",
                str(root / "runs"),
            ]
        )
        == 0
    )
    (results,) = (root / "runs").glob("*/results.json")
    rows = [
        json.loads(line) for line in (results.parent / "samples.jsonl").read_text().splitlines()
    ]
    return Path(data), rows


def _released_layout_logprob(
    model, tok, processor, question: str, option: str, images: list[Path]
) -> tuple[float, int]:
    ctx = tok(PROMPT.format(question=question), add_special_tokens=True).input_ids
    whole = tok(PROMPT.format(question=question) + " " + option, add_special_tokens=True).input_ids
    assert ctx[0] == tok.bos_token_id and whole[: len(ctx)] == ctx
    option_ids = whole[len(ctx) :]
    queries = [model.config.image_token_index] * (model.config.num_query_tokens * len(images))
    ids = torch.tensor([queries + whole])
    pixels = processor(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        logits = (
            model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids))
            .logits[0]
            .float()
        )
    logp = torch.log_softmax(logits, -1)
    n = ids.shape[1]
    target = torch.tensor(option_ids)
    return float(logp[n - len(option_ids) - 1 : n - 1].gather(-1, target[:, None]).sum()), len(
        option_ids
    )


def test_chexbench_run_equals_the_released_layout_scored_independently(scored):
    from transformers import (
        Blip2ForConditionalGeneration,
        BlipImageProcessor,
        PreTrainedTokenizerFast,
    )

    data, rows = scored
    model = Blip2ForConditionalGeneration.from_pretrained(
        DEMO_MODEL_DIR, torch_dtype=torch.float32
    ).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(DEMO_MODEL_DIR)
    processor = BlipImageProcessor.from_pretrained(DEMO_MODEL_DIR)
    worst = 0.0
    assert len(rows) == 28
    for row in rows:
        images = [data.parent / p for p in row["image_paths"][:2]]  # CheXagent-8b: images[:2]
        for k, option in enumerate(row["options"]):
            ref, n = _released_layout_logprob(
                model, tok, processor, row["question"], option, images
            )
            assert row["token_counts"][k] == n, (row["item_id"], option)
            worst = max(worst, abs(row["logprobs"][k] - ref))
    assert worst <= 1e-4, worst


def test_chexagent_eval_scores_the_same_log_probs_as_chexbench_run(scored):
    from chexagent.evaluate import score_data
    from chexagent.modeling import load_bundle

    data, rows = scored
    ours = {r["item_id"]: r for r in score_data(load_bundle(DEMO_MODEL_DIR), data)}
    assert set(ours) == {r["item_id"] for r in rows}
    for row in rows:
        mine = ours[row["item_id"]]
        assert mine["option_tokens"] == row["token_counts"]
        assert mine["option_logprobs"] == pytest.approx(row["logprobs"], abs=1e-5)
        assert mine["prediction"] == row["prediction"]
