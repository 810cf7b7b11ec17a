"""One option scored by the model's own processor and forward, without the engine.

`chexbench check-adapter`'s "reference forward" check compares an adapter's scores with these.
Nothing here goes through an adapter's template pieces, splice, positions, masks or cache: the
model's own class builds its input embeddings, positions (M-RoPE from the image grid for
Qwen2-VL), attention masks (bidirectional image tokens for Gemma 3) and cross-attention inputs
(Mllama) from token ids and its processor's pixels, in one full forward with no padding, as a
user of the model card would run it. An adapter that reimplements any of that differently, or
preprocesses images its own way, scores differently and fails the check.

The convention for chat models (docs/evaluate-any-model.md):

    prompt = the processor's chat template for one user turn (the images, then the question),
             with the generation prompt
    ids    = processor(text=prompt + " " + option, images=...), special tokens added as
             transformers' own apply_chat_template(tokenize=True) adds them (unless the
             template already starts with BOS)
    score  = the sum of log p(option token | everything before it), one full forward

where the option's tokens are those past the longest common prefix of the tokenised prompt and
the tokenised prompt + option (normally exactly the tokens of " option").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def user_turn(context: str, n_images: int) -> list[dict[str, Any]]:
    """One user turn: the item's images, then the question (the chat convention)."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": context})
    return [{"role": "user", "content": content}]


def chat_prompt(processor: Any, messages: list[dict[str, Any]]) -> str:
    """`messages` rendered by the processor's own chat template, with the generation prompt."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def adds_special_tokens(tokenizer: Any, text: str) -> bool:
    """transformers' rule (`ProcessorMixin.apply_chat_template(tokenize=True)`): the tokenizer
    adds its special tokens unless the rendered template already starts with BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def option_token_count(tokenizer: Any, prompt: str, continuation: str) -> int:
    """How many tokens of tokenize(prompt + continuation) are past its common prefix with
    tokenize(prompt): the option's tokens (one more when the option merges with the prompt's
    last token)."""
    special = adds_special_tokens(tokenizer, prompt)
    ctx = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    whole = tokenizer(prompt + continuation, add_special_tokens=special)["input_ids"]
    shared = 0
    for a, b in zip(ctx, whole, strict=False):
        if a != b:
            break
        shared += 1
    return len(whole) - shared


def score_last(logits: torch.Tensor, ids: torch.Tensor, n: int) -> tuple[float, bool, int]:
    """(sum of the last `n` tokens' log-probs, all of them greedy, n) for one row of logits
    (T, V) over ids (T,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    total = ids.shape[0]
    sel = logp[total - n - 1 : total - 1]
    target = ids[total - n :].to(sel.device)
    picked = sel.gather(-1, target[:, None]).sum()
    return float(picked), bool((sel.argmax(-1) == target).all()), n


@torch.inference_mode()
def processor_reference(
    model: Any, processor: Any, prompt: str, continuation: str, images: Sequence[Any]
) -> tuple[float, bool, int]:
    """The option's score from `processor(text=prompt + continuation, images=...)` through
    `model(**inputs)`, one full forward."""
    tokenizer = getattr(processor, "tokenizer", processor)
    kwargs: dict[str, Any] = {
        "text": [prompt + continuation],
        "return_tensors": "pt",
        "add_special_tokens": adds_special_tokens(tokenizer, prompt),
    }
    if images:
        kwargs["images"] = [list(images)]
    inputs = processor(**kwargs)
    device = model.get_input_embeddings().weight.device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    logits = model(**inputs).logits[0]
    n = option_token_count(tokenizer, prompt, continuation)
    return score_last(logits, inputs["input_ids"][0], n)


@torch.inference_mode()
def token_reference(
    model: Any, ids: Sequence[int], n_option: int, **inputs: Any
) -> tuple[float, bool, int]:
    """The score of the last `n_option` of `ids` from `model(input_ids=ids, **inputs)`: for
    models whose own forward merges image features at image-token positions (BLIP-2,
    InstructBLIP, LLaVA), with `inputs` from their own processors."""
    device = model.get_input_embeddings().weight.device
    row = torch.tensor([list(ids)], device=device)
    extra = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    logits = model(input_ids=row, **extra).logits[0]
    return score_last(logits, row[0], n_option)


def native_reference(
    adapter: Any, context: str, continuation: str, images: Sequence[Any]
) -> tuple[tuple[float, bool, int], str]:
    """(score, where the prompt came from) for a `NativeAdapter`: its model and processor, the
    prompt rendered by the processor's own chat template from the adapter's messages (never the
    adapter's `prompt_text`), or the adapter's prompt when the processor has no template."""
    processor = adapter.processor
    if getattr(processor, "chat_template", None):
        prompt = chat_prompt(processor, adapter.messages(context, len(images)))
        source = "the processor's chat template"
    else:
        prompt = adapter.prompt_text(context, len(images))
        source = "the adapter's prompt (the processor has no chat template)"
    return processor_reference(adapter.model, processor, prompt, continuation, images), source
