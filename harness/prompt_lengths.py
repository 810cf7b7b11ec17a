"""Every prompt of a run measured against the model's context length before anything is scored.

A prompt longer than the model's context does not fail cleanly: a learned position table
raises an index error mid-run, and a 360 KB question grew one process to 21 GB before the
kernel killed it. So once the model is loaded, and before the first forward pass, each
request the run will make is laid out exactly as the engine will feed it
(`CheXbenchLM.layout`: the adapter's template, special tokens, image slots, the option) and
counted; a request that does not fit is an error naming the task and item.

What counts: for multiple choice by log-likelihood, the prompt plus the longest option; for
free text (and generation-mode multiple choice), the prompt plus one new token. Generation may
then run past the context before reaching its token limit, as it would in the model's own
`generate()`; the run card records how many prompts leave less room than that limit.
With `chexbench run --truncate-prompts`, an item that does not fit is not refused: the
fewest leading words of its own text (the question, the indication, or the findings; never
the template, an image or an option) are dropped for it to fit, as lm-eval truncates a context
from the left. Each cut is recorded in the run card (`extra.prompts.truncated`) and the
results' coverage; an item that cannot fit even with all of its text dropped is still refused.
An image takes the number of embeddings the adapter's vision side returns for it, or, for a
native adapter (`--model hf`), the number of tokens its processor expands the image's
placeholder into; both are measured on the run's first image (the built-in adapters resize to
one fixed size; a processor with dynamic resolution may give other images other counts). A
model served over an API (no local language model) is not checked here: its server refuses
what does not fit.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from harness.docs import drop_leading_words, free_text_field, word_count
from harness.errors import UserError
from model_adapters.base import ImageSlot
from model_adapters.engine import MC_MAX_NEW_TOKENS

# Where an adapter's language model states its context, most specific first.
_LIMIT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "n_ctx",
    "max_seq_len",
)
_SUBCONFIGS = ("text_config", "language_config", "llm_config")


class PromptTooLong(UserError):
    """A request longer than the model's context; the message names the task and item."""


def context_length(adapter: Any) -> int | None:
    """The language model's context in tokens: an adapter's own `context_length`, else its
    language model's config. None when the adapter exposes neither (nothing is checked)."""
    own = getattr(adapter, "context_length", None)
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        return own
    model = getattr(adapter, "model", None)
    config = getattr(model, "config", None)
    candidates = [
        getattr(getattr(model, "language_model", None), "config", None),
        *(getattr(config, name, None) for name in _SUBCONFIGS),
        config,
    ]
    for cfg in candidates:
        for key in _LIMIT_KEYS:
            value = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def image_tokens(lm: Any, image_path: str, context: str) -> int:
    """How many positions one image takes in the prompt (one vision or processor call)."""
    import torch

    from harness.images import open_image

    adapter = lm.adapter
    image = open_image(image_path)
    if lm.native:  # the processor expands the prompt's one placeholder per image
        text = adapter.prompt_text(context, 1)
        expanded = adapter.processor_inputs([text], [[image]])["input_ids"].shape[-1]
        return int(expanded - len(adapter.text_ids(text)) + 1)
    pixels = adapter.preprocess(image)[None]
    kwargs = {}
    if "texts" in inspect.signature(adapter.encode_images).parameters:
        image_text = getattr(adapter, "image_text", None)
        kwargs["texts"] = [image_text(context) if image_text else context]
    with torch.inference_mode():
        encoding = adapter.encode_images(pixels, **kwargs)[0]
    return int(encoding.slot_embeds.shape[0])


def prompt_length(
    lm: Any,
    context: str,
    continuation: str,
    n_images: int,
    per_image: int,
    generation: bool = False,
) -> int:
    """Positions one request takes: its layout with each image at `per_image` positions."""
    layout = lm.layout(context, continuation, n_images, generation=generation)
    slots = n_images if lm.native else sum(isinstance(t, ImageSlot) for t in layout.prefix)
    return len(layout.prefix) - slots + slots * per_image + len(layout.option)


def requests_of(lm: Any, task: str, doc: dict[str, Any]) -> Iterable[tuple[str, str, bool]]:
    """(context, continuation, generation) of each request the task makes for one doc,
    built by the same task hooks lm-eval calls (tasks/chexbench/utils.py)."""
    from tasks.chexbench import utils

    if "options" in doc:
        question = utils.doc_to_text(doc)
        if lm.mc_mode == "generate":
            yield lm.mc_prompt(question.strip(), [o.strip() for o in doc["options"]]), "", True
        else:
            for option in doc["options"]:
                yield question, " " + option, False  # the YAML's target_delimiter
    elif task.endswith("summarization"):
        yield utils.summarization_text(doc), "", True
    else:
        yield utils.generation_text(doc), "", True


def check_prompt_lengths(
    lm: Any, docs: dict[str, list[dict[str, Any]]], source: str = "", truncate: bool = False
) -> dict[str, Any]:
    """Raise `PromptTooLong` for the first request that cannot fit the model's context (the
    message names `source`, the data file); returns what the run card records (the context,
    the longest request per task, and with `truncate` the words each cut item lost)."""
    adapter = getattr(lm, "adapter", None)
    limit = context_length(adapter) if hasattr(lm, "layout") else None
    if limit is None:
        return {"context_length": None, "checked": False}
    check = _Checker(lm, limit, source)
    truncated: dict[str, dict[str, int]] = {}
    longest: dict[str, int] = {}
    room_short = 0
    for task, task_docs in docs.items():
        for doc in task_docs:
            try:
                tokens, short = check.measure(task, doc)
            except PromptTooLong:
                if not truncate:
                    raise
                words, field = check.shortest_cut(task, doc)
                truncated.setdefault(task, {})[doc["item_id"]] = words
                cut = {**doc, field: drop_leading_words(doc[field], words)}
                tokens, short = check.measure(task, cut)
            longest[task] = max(longest.get(task, 0), tokens)
            room_short += short
    report = {
        "context_length": limit,
        "checked": True,
        "image_tokens": check.per_image,
        "longest_request": longest,
        "generation_may_exceed_context": room_short,
    }
    if truncate:
        report["truncated"] = truncated
    return report


class _Checker:
    """Counts each request of a doc as the engine will lay it out."""

    def __init__(self, lm: Any, limit: int, source: str):
        self.lm, self.limit, self.source = lm, limit, source
        self.per_image: int | None = None  # measured once, on the run's first image
        self.budget = lm.max_gen_toks or lm.adapter.generation.max_new_tokens

    def measure(self, task: str, doc: dict[str, Any]) -> tuple[int, int]:
        """The doc's longest request in positions, and how many of its generations may run
        past the context; raise `PromptTooLong` when a request does not fit."""
        lm, cap = self.lm, self.lm.adapter.max_images
        images = [] if task.endswith("summarization") else doc.get("image_paths", [])
        n_images = len(images) if cap is None else min(len(images), cap)
        longest, room_short = 0, 0
        prompt_checked = None
        for context, continuation, generation in requests_of(lm, task, doc):
            if n_images and self.per_image is None:
                self.per_image = image_tokens(lm, images[0], context)
            per_image = self.per_image or 0
            if not generation and context != prompt_checked:
                # The options share the prompt: one too long on its own fails here, before a
                # huge text is tokenised once per option.
                prompt_checked = context
                tokens = prompt_length(lm, context, "", n_images, per_image)
                if tokens > self.limit:
                    raise self._refusal(task, doc, "prompt alone", tokens, n_images)
            tokens = prompt_length(lm, context, continuation, n_images, per_image, generation)
            longest = max(longest, tokens)
            if tokens + int(generation) > self.limit:
                what = "prompt and its first new token" if generation else "prompt and option"
                raise self._refusal(task, doc, what, tokens + int(generation), n_images)
            room = MC_MAX_NEW_TOKENS if "options" in doc else self.budget
            room_short += int(generation and tokens + room > self.limit)
        return longest, room_short

    def shortest_cut(self, task: str, doc: dict[str, Any]) -> tuple[int, str]:
        """The fewest leading words of the doc's own text whose removal makes it fit, and
        that field (a bisection: a shorter text never needs more positions)."""
        field = free_text_field(task)
        total = word_count(doc[field])

        def fits(words: int) -> bool:
            try:
                self.measure(task, {**doc, field: drop_leading_words(doc[field], words)})
            except PromptTooLong:
                return False
            return True

        if not fits(total):
            raise PromptTooLong(
                f"{self._where(task, doc)}: does not fit {self.lm.adapter.name}'s context of "
                f"{self.limit} tokens even with all of its {field} dropped (--truncate-prompts "
                "cuts only the item's own text); shorten its options or images"
            )
        low, high = 0, total  # fits(high), not fits(low)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle, high)
        return high, field

    def _where(self, task: str, doc: dict[str, Any]) -> str:
        source = f"{self.source}: " if self.source else ""
        return f"{source}task {task}, item {doc.get('index')} ({doc.get('item_id')})"

    def _refusal(
        self, task: str, doc: dict[str, Any], what: str, tokens: int, n_images: int
    ) -> PromptTooLong:
        return PromptTooLong(
            f"{self._where(task, doc)}: {tokens} tokens ({what}, with {n_images} image(s) of "
            f"{self.per_image or 0}) but {self.lm.adapter.name} reads at most {self.limit}; "
            "shorten the item's text, use a model with a longer context, or pass "
            "--truncate-prompts to cut the item's text from the left (recorded in the results)"
        )
