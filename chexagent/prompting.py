"""The one place that lays out a CheXagent sequence: image slots, chat template, answer, labels.

Training (stage 3) and scoring (the harness adapter) must see byte-identical prompts, or a
model is trained on one layout and graded on another. Layout, left to right:

    <image> x (num_query_tokens * num_images)      # replaced by Q-Former outputs
    <s> USER: <s>{question} ASSISTANT: <s>          # PROMPT_TEMPLATE, tokenised as the context
     {answer}                                       # lm-eval's target delimiter is a space
    </s>                                            # only when add_eos (training generation)

The context and the answer are tokenised separately and concatenated, as lm-eval does, so the
answer tokens are exactly `tokenizer(" " + answer)` and never merge across the boundary.
Labels are -100 on every image and context token: only answer tokens carry loss / are scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from chexagent.modeling import PROMPT_TEMPLATE
from chexagent.tokenizer import IMAGE_TOKEN

IGNORE_INDEX = -100
TARGET_DELIMITER = " "


@dataclass
class PromptedInputs:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on image + prompt tokens
    answer_start: int  # index of the first answer token in input_ids (== len when no answer)
    num_answer_tokens: int  # scored tokens, EOS included when add_eos

    def tensors(self) -> dict[str, torch.Tensor]:
        ids = torch.tensor([self.input_ids], dtype=torch.long)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": torch.tensor([self.labels], dtype=torch.long),
        }


def image_token_ids(
    tokenizer: PreTrainedTokenizerBase, num_images: int, num_query_tokens: int
) -> list[int]:
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_id is None or image_id == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no {IMAGE_TOKEN} token; use chexagent.tokenizer")
    return [image_id] * (num_images * num_query_tokens)


def build_inputs(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    answer: str | None = None,
    *,
    num_images: int,
    num_query_tokens: int,
    add_eos: bool = False,
    max_length: int | None = None,
) -> PromptedInputs:
    """Token ids and labels for one (images, question, answer) triplet.

    `answer=None` gives the bare prompt (generation). `max_length` truncates the answer's tail
    first and raises when even the prompt does not fit, so a prompt is never silently cut.
    """
    context = image_token_ids(tokenizer, num_images, num_query_tokens)
    context += tokenizer(PROMPT_TEMPLATE.format(prompt=question), add_special_tokens=True)[
        "input_ids"
    ]
    answer_ids: list[int] = []
    if answer is not None:
        answer_ids = tokenizer(TARGET_DELIMITER + answer, add_special_tokens=False)["input_ids"]
        if add_eos:
            answer_ids = answer_ids + [tokenizer.eos_token_id]
    if max_length is not None:
        if len(context) >= max_length and answer is not None or len(context) > max_length:
            raise ValueError(
                f"prompt of {len(context)} tokens does not fit max_length={max_length}: "
                f"{question[:80]!r}"
            )
        answer_ids = answer_ids[: max_length - len(context)]
    return PromptedInputs(
        input_ids=context + answer_ids,
        labels=[IGNORE_INDEX] * len(context) + answer_ids,
        answer_start=len(context),
        num_answer_tokens=len(answer_ids),
    )
