"""Scoring through a model's own processor and forward: the native path of the engine.

The splice path (`VisionLanguageAdapter`) builds the LM input itself, which the paper's 2023
models need. Today's VLMs encode more in their own code than a splice can express: M-RoPE
positions from the image grid (Qwen2-VL), bidirectional attention over image tokens (Gemma 3),
cross-attention masks (Mllama), tiling and dynamic resolution. A `NativeAdapter` hands the
engine what the model's own processor produces for the prompt, and the model's own forward
(through its `prepare_inputs_for_generation`, the code `generate` uses) runs it. The engine
keeps what makes it fast: one prefix pass per item, its KV cache reused by every option, items
batched with left padding.

The reference an option's score must equal is the model's own processor and forward with no
cache (`model_adapters.reference`, the convention in docs/evaluate-any-model.md); the engine
equals it to float rounding on nine architectures (tests/model_adapters/test_hf_architectures.py).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from model_adapters.base import GenerationSettings
from model_adapters.reference import adds_special_tokens, chat_prompt, user_turn

# Processor outputs that carry pixels: fed on the prefix pass only.
_SEQ_KEYS_NOT_EXTENDED = ("input_ids", "attention_mask")


class NativeAdapter(abc.ABC):
    """A model scored through its own processor and forward (see the module docstring).

    Subclasses set `name` and load `model` and `processor`; the prompt is the processor's chat
    template over `messages` unless they override `prompt_text`. Everything else has defaults
    that follow transformers' conventions.
    """

    name: ClassVar[str]
    display_name: ClassVar[str] = ""
    max_images: ClassVar[int | None] = None
    generation: ClassVar[GenerationSettings] = GenerationSettings()
    image_text_reads_option: ClassVar[bool] = False

    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def messages(self, context: str, n_images: int) -> list[dict[str, Any]]:
        """The chat for one question: one user turn with the images, then the question. Override
        to add what the model's card adds (a system turn); `prompt_text` renders it, and
        check-adapter's reference renders it with the processor's own template."""
        return user_turn(context, n_images)

    def prompt_text(self, context: str, n_images: int) -> str:
        """The full prompt text for a question with `n_images` images: `messages` through the
        processor's chat template, with the generation prompt. The option follows it after
        lm-eval's space."""
        if not getattr(self.processor, "chat_template", None):
            raise NotImplementedError(
                f"{self.name}: the processor has no chat template; override prompt_text"
            )
        return chat_prompt(self.processor, self.messages(context, n_images))

    def generation_text(self, context: str, n_images: int) -> str:
        """The prompt for free-text generation; the same template by default."""
        return self.prompt_text(context, n_images)

    def add_special_tokens(self, text: str) -> bool:
        """Whether the tokenizer adds its special tokens to `text`: transformers' own rule in
        `ProcessorMixin.apply_chat_template(tokenize=True)`, which model cards use: yes, unless
        the rendered template already starts with BOS (Gemma 3, Mllama write it themselves;
        LLaVA-1.5's template leaves it to the tokenizer)."""
        return adds_special_tokens(self.tokenizer, text)

    def processor_inputs(
        self, texts: Sequence[str], images: Sequence[Sequence[Any]]
    ) -> dict[str, torch.Tensor]:
        """The processor's batch for `texts` (left-padded), on the model's device."""
        kwargs: dict[str, Any] = {
            "text": list(texts),
            "padding": True,
            "return_tensors": "pt",
            "add_special_tokens": self.add_special_tokens(texts[0]),
        }
        if any(len(ims) for ims in images):
            kwargs["images"] = [list(ims) for ims in images]
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # LLaMA's has none; padded positions are masked
            self.tokenizer.pad_token = self.tokenizer.eos_token
        batch = self.processor(**kwargs)
        return {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }

    def text_ids(self, text: str) -> list[int]:
        """Token ids of prompt text, image placeholders unexpanded (only tails are compared)."""
        return list(
            self.tokenizer(text, add_special_tokens=self.add_special_tokens(text))["input_ids"]
        )

    @property
    def eos_token_ids(self) -> list[int]:
        config = getattr(self.model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        if eos is None:
            eos = getattr(self.tokenizer, "eos_token_id", None)
        return [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]

    def postprocess_generation(self, text: str) -> str:
        return text

    def model_info(self) -> dict[str, Any]:
        return {}


@dataclass
class _Split:
    """One option against its item's prompt: `fed` ids go in after the (shortened) prefix, the
    last `n_scored` of them are the option's tokens."""

    fed: list[int]
    n_scored: int


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def split_options(
    adapter: NativeAdapter, prompt: str, continuations: Sequence[str]
) -> tuple[int, list[_Split]]:
    """(prompt tokens to drop from the prefix, one split per option).

    Normally the option's tokens simply follow the prompt's. When a tokenizer merges the
    prompt's last token with the option's first, the item's prefix ends before the merge and
    the merged token is fed (and scored) with the option."""
    ctx = adapter.text_ids(prompt)
    joints = [adapter.text_ids(prompt + c) for c in continuations]
    keep = [min(_common_prefix(ctx, j), len(ctx)) for j in joints]
    base = min(keep)
    splits = []
    for joint, k in zip(joints, keep, strict=True):
        if len(joint) <= k:
            raise ValueError(f"{adapter.name}: an option adds no token to the prompt")
        splits.append(_Split(joint[base:], len(joint) - k))
    return len(ctx) - base, splits


# Processor outputs about images, never per token (a tile count may equal a prompt length).
_IMAGE_KEY_PREFIXES = ("pixel_", "image_", "aspect_ratio", "video_")


def _seq_aligned(batch: dict[str, Any], length: int) -> list[str]:
    """Keys of per-token processor outputs (input ids, masks, token types, Mllama's
    cross-attention mask): tensors whose second dimension is the sequence."""
    return [
        k
        for k, v in batch.items()
        if isinstance(v, torch.Tensor)
        and v.dim() >= 2
        and v.shape[1] == length
        and not k.startswith(_IMAGE_KEY_PREFIXES)
    ]


def drop_tail(batch: dict[str, Any], drop: Sequence[int], pad_id: int) -> dict[str, Any]:
    """The left-padded batch with `drop[i]` tokens removed from the end of row i, re-padded."""
    if not any(drop):
        return batch
    length = batch["input_ids"].shape[1]
    keys = _seq_aligned(batch, length)
    new_len = max(int(batch["attention_mask"][i].sum()) - d for i, d in enumerate(drop))
    out = dict(batch)
    for key in keys:
        src = batch[key]
        fill = pad_id if key == "input_ids" else 0
        dst = torch.full(
            (src.shape[0], new_len, *src.shape[2:]), fill, dtype=src.dtype, device=src.device
        )
        for i, d in enumerate(drop):
            n = int(batch["attention_mask"][i].sum()) - d
            dst[i, new_len - n :] = src[i, length - d - n : length - d]
        out[key] = dst
    return out


def _extend(value: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
    """A sequence-aligned input for the option pass: the prefix rows, then `width` copies of
    the last prompt position (text tokens take what the prompt's last token had)."""
    picked = value.index_select(0, rows.to(value.device))
    tail = picked[:, -1:].expand(-1, width, *picked.shape[2:])
    return torch.cat([picked, tail], dim=1)


def _select_row_state(model: Any, rows: torch.Tensor) -> None:
    """Per-row state a model keeps between prefill and decoding (Qwen2-VL's `rope_deltas`)
    follows the cache when rows are repeated per option."""
    for owner in (model, getattr(model, "model", None)):
        deltas = getattr(owner, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor) and deltas.shape[0] > 1:
            owner.rope_deltas = deltas.index_select(0, rows.to(deltas.device))


def forward(
    model: Any,
    inputs: dict[str, Any],
    cache: Any,
    start: int,
    length: int,
    last_only: bool = False,
) -> Any:
    """One pass of `length` new positions after `start` cached ones, through the model's own
    input preparation (positions from the attention mask, per-architecture extras).
    `last_only`: logits for the last position alone, as transformers' `generate()` asks for
    them; a prefix of thousands of image tokens times a 150-260k vocabulary is gigabytes of
    logits otherwise, of which only the last row is read."""
    cache_position = torch.arange(start, start + length, device=inputs["input_ids"].device)
    prepared = model.prepare_inputs_for_generation(
        past_key_values=cache, cache_position=cache_position, use_cache=True, **inputs
    )
    # None means "not given" to the model (logits_to_keep=None would index with None).
    prepared = {k: v for k, v in prepared.items() if v is not None}
    prepared["use_cache"] = True
    if last_only and model._supports_logits_to_keep():
        prepared["logits_to_keep"] = 1
    return model(**prepared)


@torch.inference_mode()
def score_items(
    adapter: NativeAdapter,
    contexts: Sequence[str],
    images: Sequence[Sequence[Any]],
    continuations: Sequence[Sequence[str]],
) -> list[list[tuple[float, bool, int]]]:
    """(summed option log-prob, is greedy, option token count) for every option of every item:
    one prefix pass for the batch, then one pass over all options from the cached prefix."""
    from transformers import DynamicCache

    model = adapter.model
    prompts = [adapter.prompt_text(c, len(ims)) for c, ims in zip(contexts, images, strict=True)]
    drops, splits = zip(
        *(
            split_options(adapter, p, conts)
            for p, conts in zip(prompts, continuations, strict=True)
        ),
        strict=True,
    )
    pad_id = adapter.tokenizer.pad_token_id or 0
    batch = drop_tail(adapter.processor_inputs(prompts, images), drops, pad_id)
    prefix_len = batch["input_ids"].shape[1]
    cache = DynamicCache()
    out = forward(model, batch, cache, 0, prefix_len, last_only=True)
    last_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    cache = out.past_key_values

    flat = [(i, s) for i, item in enumerate(splits) for s in item]
    rows = torch.tensor([i for i, _ in flat])
    width = max(len(s.fed) for _, s in flat)
    device = batch["input_ids"].device
    fed = torch.full((len(flat), width), pad_id, dtype=torch.long, device=device)
    fed_mask = torch.zeros((len(flat), width), dtype=torch.long, device=device)
    for r, (_, s) in enumerate(flat):
        fed[r, : len(s.fed)] = torch.tensor(s.fed, device=device)
        fed_mask[r, : len(s.fed)] = 1
    cache.batch_select_indices(rows.to(device))
    _select_row_state(model, rows)
    row_dev = rows.to(device)
    inputs: dict[str, Any] = {
        "input_ids": torch.cat([batch["input_ids"].index_select(0, row_dev), fed], dim=1),
        "attention_mask": torch.cat(
            [batch["attention_mask"].index_select(0, row_dev), fed_mask], dim=1
        ),
    }
    for key in _seq_aligned(batch, prefix_len):
        if key not in _SEQ_KEYS_NOT_EXTENDED:
            inputs[key] = _extend(batch[key], rows, width)
    logits = forward(model, inputs, cache, prefix_len, width).logits
    logp = torch.log_softmax(logits.float(), dim=-1)

    results: list[list[tuple[float, bool, int]]] = [[] for _ in splits]
    for r, (i, s) in enumerate(flat):
        ids = torch.tensor(s.fed, device=logp.device)
        # Position t of the option pass predicts fed token t+1; the prefix predicts token 0.
        preds = torch.cat([last_logp[i : i + 1].to(logp.device), logp[r, : len(s.fed) - 1]])
        scored = slice(len(s.fed) - s.n_scored, len(s.fed))
        picked = preds[scored].gather(-1, ids[scored, None]).squeeze(-1)
        greedy = bool((preds[scored].argmax(-1) == ids[scored]).all())
        results[i].append((float(picked.sum()), greedy, s.n_scored))
    return results


@torch.inference_mode()
def generate(
    adapter: NativeAdapter,
    contexts: Sequence[str],
    images: Sequence[Sequence[Any]],
    max_new_tokens: int,
    until: Sequence[Sequence[str]] | None = None,
    stop_when: Callable[[str], bool] | None = None,
) -> list[str]:
    """Greedy text from the model's own `generate` (prompt cut off, special tokens dropped),
    stopping a row at its first stop string or when `stop_when` holds for its text so far."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    prompts = [
        adapter.generation_text(c, len(ims)) for c, ims in zip(contexts, images, strict=True)
    ]
    batch = adapter.processor_inputs(prompts, images)
    start = batch["input_ids"].shape[1]
    until = [list(u) for u in (until or [[] for _ in prompts])]
    tokenizer = adapter.tokenizer

    class TextStop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor(
                [
                    any(s and s in t for s in stops) or (stop_when is not None and stop_when(t))
                    for t, stops in zip(texts, until, strict=True)
                ],
                device=input_ids.device,
            )

    out = adapter.model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=adapter.eos_token_ids or None,
        pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([TextStop()]),
    )
    texts = tokenizer.batch_decode(out[:, start:], skip_special_tokens=True)
    results = []
    for text, stops in zip(texts, until, strict=True):
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
        results.append(text)
    return results


@torch.inference_mode()
def reference_score(
    adapter: NativeAdapter, context: str, continuation: str, images: Sequence[Any]
) -> tuple[float, bool, int]:
    """The adapter's own prompt and processor call, no cache: one full forward of
    prompt + continuation, the option's tokens' log-probs summed (check-adapter's "adapter's
    own full forward"; the independent reference is `model_adapters.reference`)."""
    prompt = adapter.prompt_text(context, len(images))
    _, (split,) = split_options(adapter, prompt, [continuation])
    batch = adapter.processor_inputs([prompt + continuation], [list(images)])
    logits = adapter.model(**batch).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    ids = batch["input_ids"][0]
    total, n = len(ids), split.n_scored
    sel = logp[total - n - 1 : total - 1]
    target = ids[total - n :]
    return (float(sel.gather(-1, target[:, None]).sum()), bool((sel.argmax(-1) == target).all()), n)
