"""`chexagent.prompting.build_inputs`: the one sequence layout shared by stage-3 training and
the harness's scoring, and the CheXbench option score computed from it."""

from __future__ import annotations

import pytest
import torch

from chexagent.evaluate import option_scores
from chexagent.forward import lm_logits, token_logprobs
from chexagent.modeling import PROMPT_TEMPLATE, build_model
from chexagent.prompting import IGNORE_INDEX, build_inputs
from chexagent.tokenizer import IMAGE_TOKEN, load_tokenizer

pytestmark = pytest.mark.usefixtures("single_thread")


def test_layout_images_then_template_then_answer():
    tok = load_tokenizer()
    built = build_inputs(
        tok, "What is the view of this chest X-ray?", "PA", num_images=2, num_query_tokens=8
    )
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert built.input_ids[:16] == [image_id] * 16 and built.input_ids[16] != image_id
    context = tok(PROMPT_TEMPLATE.format(prompt="What is the view of this chest X-ray?"))
    assert built.input_ids[16 : built.answer_start] == context["input_ids"]
    assert tok.decode(built.input_ids[16 : built.answer_start]).endswith("ASSISTANT: <s>")
    answer = tok(" PA", add_special_tokens=False)["input_ids"]
    assert built.input_ids[built.answer_start :] == answer
    assert built.labels == [IGNORE_INDEX] * built.answer_start + answer
    assert built.num_answer_tokens == len(answer)
    with_eos = build_inputs(tok, "q", "PA", num_images=0, num_query_tokens=8, add_eos=True)
    assert with_eos.labels[-1] == tok.eos_token_id
    bare = build_inputs(tok, "q", None, num_images=1, num_query_tokens=8)
    assert bare.answer_start == len(bare.input_ids) and bare.num_answer_tokens == 0


def test_prompt_that_does_not_fit_is_an_error_not_a_cut():
    tok = load_tokenizer()
    with pytest.raises(ValueError, match="does not fit max_length=20"):
        build_inputs(tok, "word " * 40, "yes", num_images=1, num_query_tokens=8, max_length=20)
    cut = build_inputs(
        tok, "q", "a long answer " * 20, num_images=0, num_query_tokens=8, max_length=30
    )
    assert len(cut.input_ids) == 30


def test_option_scores_match_one_by_one_scoring():
    bundle = build_model("tiny", seed=0)
    pixels = torch.rand(1, 3, 64, 64)
    options = ["AP", "PA", "Lateral", "LL"]
    batched = option_scores(bundle, pixels, "What is the view of this chest X-ray?", options)
    for option, score in zip(options, batched, strict=True):
        b = build_inputs(
            bundle.tokenizer,
            "What is the view of this chest X-ray?",
            option,
            num_images=1,
            num_query_tokens=bundle.arch.num_query_tokens,
        )
        t = b.tensors()
        with torch.no_grad():
            logits = lm_logits(bundle.model, t["input_ids"], t["attention_mask"], pixels)
        total, count = token_logprobs(logits, t["labels"])
        assert int(count) == b.num_answer_tokens == score.n_tokens
        assert score[0] == pytest.approx(float(total), abs=1e-4)
