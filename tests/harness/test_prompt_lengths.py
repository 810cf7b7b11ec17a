"""The context check counts what the model is actually fed: for a built-in adapter, the
positions of the engine's own forward passes (observed, not recomputed); for a native
`--model hf` adapter, the length of the model's own processor output for the same prompt."""

from __future__ import annotations

import pytest
from helpers.tiny_vlms import image, write_tiny_vlm

from harness.prompt_lengths import (
    PromptTooLong,
    check_prompt_lengths,
    context_length,
    image_tokens,
    prompt_length,
)


@pytest.fixture(scope="module")
def smoke_lm():
    from model_adapters.registry import build_lm

    return build_lm(
        "chexagent", {"pretrained": "smoke", "device": "cpu"}, batch_size=1, show_progress=False
    )


def test_the_count_equals_the_positions_the_engine_feeds(smoke_lm, tmp_path):
    lm = smoke_lm
    path = tmp_path / "film.png"
    image(0, (64, 64)).save(path)
    question, option = "Which view is this? Answer in one word, please.", " posteroanterior"
    widths = []
    forward = lm.adapter.lm_forward

    def observed(embeds, *args, **kwargs):
        widths.append(embeds.shape[1])
        return forward(embeds, *args, **kwargs)

    lm.adapter.lm_forward = observed
    try:
        from harness.images import ImageRef

        lm.loglikelihood([(question, option, {"visual": [ImageRef(str(path))]})])
    finally:
        del lm.adapter.lm_forward
    per_image = image_tokens(lm, str(path), question)
    assert per_image == lm.adapter.num_query_tokens
    # One prefix pass, then one pass over the option: their widths are what was fed.
    assert prompt_length(lm, question, option, 1, per_image) == sum(widths)
    assert context_length(lm.adapter) == lm.adapter.model.config.text_config.max_position_embeddings


def test_a_request_one_token_over_the_context_is_refused(smoke_lm, tmp_path):
    lm = smoke_lm
    path = tmp_path / "film.png"
    image(1, (64, 64)).save(path)
    limit = context_length(lm.adapter)
    per_image = image_tokens(lm, str(path), "q")
    question = "lung " * (limit - 20)
    while prompt_length(lm, question, " yes", 1, per_image) > limit:
        question = question[:-5]
    doc = {
        "item_id": "view_classification/0",
        "index": 0,
        "question": question,
        "options": ["yes", "no"],
        "answer": 0,
        "image_paths": [str(path)],
    }

    def longest(text: str) -> int:  # the count test 1 checks against the engine's forwards
        return max(prompt_length(lm, text, " " + o, 1, per_image) for o in doc["options"])

    while longest(question + " lung") <= limit:  # the longest question that still fits
        question += " lung"
    doc["question"] = question
    report = check_prompt_lengths(lm, {"chexbench_view_classification_mimic_cxr": [doc]})
    assert report["longest_request"]["chexbench_view_classification_mimic_cxr"] == longest(question)
    longer = {**doc, "question": question + " lung"}
    assert longest(longer["question"]) == limit + 1  # exactly one token over
    with pytest.raises(
        PromptTooLong,
        match=rf"item 0 .*: {limit + 1} tokens .* but chexagent reads at most {limit}",
    ):
        check_prompt_lengths(lm, {"chexbench_view_classification_mimic_cxr": [longer]}, "d.json")


def test_a_native_adapter_counts_the_images_its_processor_expands(tmp_path):
    from model_adapters.engine import CheXbenchLM
    from model_adapters.hf_auto import HFAutoAdapter

    folder = write_tiny_vlm("llava", tmp_path / "llava")
    adapter = HFAutoAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    lm = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    path = tmp_path / "film.png"
    image(2, (52, 40)).save(path)
    question = "Is there a pleural effusion?"
    text = adapter.prompt_text(question, 2)
    from PIL import Image

    pictures = [Image.open(path).convert("RGB")] * 2
    fed = adapter.processor(text=[text], images=[pictures], return_tensors="pt")["input_ids"]
    per_image = image_tokens(lm, str(path), question)
    assert per_image > 1
    assert prompt_length(lm, question, "", 2, per_image) == fed.shape[-1]


def test_truncation_drops_the_fewest_leading_words_that_make_an_item_fit(smoke_lm, tmp_path):
    """`--truncate-prompts`: the cut is minimal (one word fewer would not fit), keeps the end of
    the item's text byte for byte, and never touches an option: options that alone overflow are
    still refused."""
    lm = smoke_lm
    path = tmp_path / "film.png"
    image(3, (64, 64)).save(path)
    limit = context_length(lm.adapter)
    per_image = image_tokens(lm, str(path), "q")
    words = [f"finding{i}" for i in range(limit)]
    question = "  ".join(words) + " Which view?"
    doc = {
        "item_id": "view_classification/7",
        "index": 7,
        "question": question,
        "options": ["yes", "no"],
        "answer": 0,
        "image_paths": [str(path)],
    }
    task = "chexbench_view_classification_mimic_cxr"
    with pytest.raises(PromptTooLong, match="--truncate-prompts"):
        check_prompt_lengths(lm, {task: [doc]})
    report = check_prompt_lengths(lm, {task: [doc]}, truncate=True)
    dropped = report["truncated"][task]["view_classification/7"]

    def kept(n: int) -> str:  # written here from the words, not by the code under test
        return "  ".join(words[n:]) + " Which view?"

    def longest(text: str) -> int:
        return max(prompt_length(lm, text, " " + o, 1, per_image) for o in doc["options"])

    assert longest(kept(dropped)) <= limit < longest(kept(dropped - 1))
    assert report["longest_request"][task] == longest(kept(dropped))
    huge_option = {**doc, "options": ["effusion " * limit, "no"]}
    with pytest.raises(PromptTooLong, match="even with all of its question dropped"):
        check_prompt_lengths(lm, {task: [huge_option]}, truncate=True)
