"""The image log-likelihood engine: lm-eval's `LM` for vision-language models.

lm-eval's own multimodal model cannot score image multiple choice by log-likelihood, and the
official CheXbench evaluation scores each option with a full forward pass (vision encoder
included). Here the option requests of one item share one prefix: each unique image is encoded
once, the prompt prefix runs once with a KV cache, and all options are scored from that cache.
Items are batched with left padding and explicit position ids so that results do not depend on
the batch they land in; within a batch of equal image counts, items of similar prompt and option
lengths go together (little padding), and the images of the next batches are decoded while the
current one runs (`model_adapters.prefetch`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from PIL import Image
from tqdm import tqdm

from harness.defaults import PREFETCH_BATCHES
from harness.images import ImageRef
from harness.io import AppendLog, read_jsonl
from harness.radiograph import to_rgb8
from harness.scoring import OptionScore
from model_adapters import native
from model_adapters.base import ImageEncoding, ImageSlot, TokenIds, VisionLanguageAdapter
from model_adapters.native import NativeAdapter
from model_adapters.prefetch import ImagePrefetcher

MC_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the official choice_style: A to Z
_LETTER_RE = re.compile(r"\(([A-Z])\)")
# Official CheXagent-2 multiple choice (evaluation_chexbench/models/chexagent.py): greedy,
# max_new_tokens=512, the first "(X)" in the answer. Generation stops once an "(X)" has appeared:
# the leftmost match of a fixed-width pattern cannot change as text is appended.
MC_MAX_NEW_TOKENS = 512


def mc_prompt(question: str, options: Sequence[str]) -> str:
    """The official CheXagent-2 lettered prompt (research notes: CheXbench eval code)."""
    lettered = ", ".join(f"({MC_LETTERS[i]}) {o}" for i, o in enumerate(options))
    letters = ", ".join(f"({MC_LETTERS[i]})" for i in range(len(options)))
    return (
        f"{question}\nOptions: {lettered}\nDirectly answer the question by choosing one "
        f"option: {letters}."
    )


def journal_key(
    fingerprint: str | None,
    mc_mode: str,
    kind: str,
    context: str,
    target: Any,
    images: Sequence[Any],
) -> str:
    """A request's key in the run journal, shared by every engine (in-process and served), so
    a journal means the same thing whichever wrote it."""
    payload = [fingerprint, mc_mode, kind, context, target, [image_fingerprint(i) for i in images]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def unpack_request(req: Any) -> tuple[Any, Any, list[Any]]:
    """(context, target, images) of an lm-eval request (or its bare args tuple)."""
    args = req.args if hasattr(req, "args") else req
    visual = list((args[2] or {}).get("visual") or []) if len(args) > 2 else []
    return args[0], args[1], visual


def mc_choice(text: str, n_options: int) -> int:
    """The option the first "(X)" in a generated answer names; -1 when there is none or it
    names no option (counted wrong and reported, never guessed)."""
    match = _LETTER_RE.search(text)
    choice = MC_LETTERS.index(match.group(1)) if match else -1
    return choice if choice < n_options else -1


@dataclass
class EngineStats:
    """Counters that benchmarks and the conformance check report."""

    items: int = 0
    requests_scored: int = 0
    requests_resumed: int = 0
    vision_calls: int = 0
    images_encoded: int = 0
    prefix_forwards: int = 0
    option_forwards: int = 0
    boundary_fallbacks: int = 0
    generated: int = 0
    # Token positions of the prefix and option passes, and how many of them were padding.
    prefix_tokens: int = 0
    prefix_padding: int = 0
    option_tokens: int = 0
    option_padding: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PromptLayout:
    """The sequence the engine feeds the model for one option, before image embedding.

    `prefix` is token ids with an `ImageSlot` where each image's embeddings go; `option` is
    the scored token ids that follow it (empty for a generation prompt). The score of an option
    is the sum of the log-probs of `option` given everything before it; `acc_chexbench` divides
    it by `len(option)`. Golden protocol tests compare this with the official wrappers' inputs.
    """

    prefix: tuple[int | ImageSlot, ...]
    option: tuple[int, ...]


@dataclass
class _Item:
    """The option requests that share a context and images."""

    context: str
    images: list[Any]
    request_idx: list[int] = field(default_factory=list)
    continuations: list[str] = field(default_factory=list)
    # The text a question-reading vision side sees (InstructBLIP's Q-Former): the context, or
    # context + option for adapters whose official code feeds it the option too.
    vision_text: str = ""
    # (prompt parts, last piece, per-option (context ids, option ids)): tokenised once, for
    # the length order of batches and for scoring.
    tokens: tuple | None = None

    def __post_init__(self) -> None:
        self.vision_text = self.vision_text or self.context


# ---------------------------------------------------------------------------------------------
def image_fingerprint(image: Any) -> str:
    if isinstance(image, ImageRef):
        return image.fingerprint
    if isinstance(image, Image.Image):
        name = getattr(image, "filename", "")
        if name:
            return f"file:{name}"
        h = hashlib.sha256(image.tobytes())
        h.update(f"{image.mode}{image.size}".encode())
        return f"pixels:{h.hexdigest()}"
    if isinstance(image, str | Path):
        return f"file:{image}"
    raise TypeError(f"unsupported image object {type(image).__name__}")


def load_rgb(image: Any) -> Image.Image:
    if isinstance(image, ImageRef):
        return image.open()
    if isinstance(image, str | Path):
        return ImageRef(str(image)).open()
    return to_rgb8(image)  # a 16-bit PIL image scaled by its depth, not clipped (images.md)


def select_cache_rows(cache: Any, rows: torch.Tensor) -> Any:
    """The prefix cache repeated/reordered to one row per option (in place for HF caches)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(rows)
        return cache
    if isinstance(cache, tuple | list):
        return type(cache)(select_cache_rows(layer, rows) for layer in cache)
    if isinstance(cache, torch.Tensor):
        return cache.index_select(0, rows.to(cache.device))
    raise TypeError(f"cannot select rows of a {type(cache).__name__} cache")


class ResumeStore:
    """Scores already computed for this run, journaled as they finish (survives kill -9)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.done: dict[str, Any] = {}
        self._log: AppendLog | None = None
        if self.path is not None:
            # Opened first: the log takes the journal's lock and cuts a torn last record, so
            # what is read here is what later records are appended to (harness.io.AppendLog).
            self._log = AppendLog(self.path)
            for row in read_jsonl(self.path):
                self.done[row["key"]] = row["value"]

    def get(self, key: str) -> Any | None:
        return self.done.get(key)

    def put(self, key: str, value: Any) -> None:
        self.done[key] = value
        if self._log is not None:
            self._log.append({"key": key, "value": value})

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


# ---------------------------------------------------------------------------------------------
class CheXbenchLM(LM):
    """lm-eval model wrapping a `VisionLanguageAdapter` with shared-prefix option scoring."""

    MULTIMODAL = True
    image_text_aware = True  # encodings are keyed by image + `adapter.image_text(text)`

    def __init__(
        self,
        adapter: VisionLanguageAdapter | NativeAdapter,
        batch_size: int = 8,
        mc_mode: str = "loglikelihood",
        max_gen_toks: int | None = None,
        resume_path: str | Path | None = None,
        fingerprint: str = "",
        show_progress: bool = True,
        encoding_cache_size: int = 256,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = PREFETCH_BATCHES,
        decode_workers: int | None = None,
        bucket: bool = True,
        decode_executor: str = "auto",
    ):
        super().__init__()
        if mc_mode not in ("loglikelihood", "generate"):
            raise ValueError(f"mc_mode must be 'loglikelihood' or 'generate', got {mc_mode!r}")
        self.adapter = adapter
        # lm-eval shards docs over ranks when world_size > 1 (harness.multiprocess launches them).
        self._rank, self._world_size, self._device = int(rank), int(world_size), adapter.device
        self.batch_size = max(1, int(batch_size))
        self.mc_mode = mc_mode
        # None: each model's official limit (adapter.generation); a number overrides it.
        self.max_gen_toks = int(max_gen_toks) if max_gen_toks is not None else None
        self.store = ResumeStore(resume_path)
        self.fingerprint = fingerprint
        self.show_progress = show_progress
        self.stats = EngineStats()
        self.encoding_cache_size = int(encoding_cache_size)
        self._encodings: OrderedDict[str, ImageEncoding] = OrderedDict()
        self._image_text = getattr(adapter, "image_text", None)
        # `prefetch` batches ahead are decoded while one runs; `bucket` orders items by prompt
        # and option length before batching. Neither changes a score (tests/model_adapters/
        # test_prefetch.py); both are recorded in the run card (`engine_settings`).
        self.bucket = bool(bucket)
        self._images = ImagePrefetcher(
            self._load_image, decode_workers, int(prefetch), decode_executor
        )

    def close(self) -> None:
        """Close the resume journal (dropping its lock) and stop the decode threads."""
        self.store.close()
        self._images.close()

    def engine_settings(self) -> dict[str, Any]:
        """How the engine batches and decodes (speed only), for the run card."""
        return {
            "batch_size": self.batch_size,
            "bucket_by_length": self.bucket,
            **self._images.settings(),
        }

    # ----- lm-eval plumbing ------------------------------------------------------------------
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from model_adapters.registry import build_lm_from_args

        return build_lm_from_args(cls.adapter_name, arg_string, additional_config or {})

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        from model_adapters.registry import build_lm_from_args

        return build_lm_from_args(cls.adapter_name, arg_dict, additional_config or {})

    # ----- data parallel: lm-eval's gathers across ranks go through these --------------------
    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size <= 1:
            return tensor
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if self.world_size <= 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        """Deliberately no wait: ranks share nothing while scoring (one journal each), the
        gathers that follow synchronise them anyway, and lm-eval calls this once per request
        type a rank has, so a real barrier deadlocks when ranks differ in request types."""

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.adapter.tokenizer, "name_or_path", self.adapter.name)

    def _key(self, kind: str, context: str, target: Any, images: Sequence[Any]) -> str:
        return journal_key(self.fingerprint, self.mc_mode, kind, context, target, images)

    _unpack = staticmethod(unpack_request)

    # ----- tokenisation ----------------------------------------------------------------------
    def _prefix_parts(
        self, context: str, n_images: int, generation: bool = False
    ) -> tuple[list[list[int] | ImageSlot], str]:
        """Token ids and image slots of the prompt, except the final text piece (returned raw).

        `generation` selects the model's free-text template (`generation_segments`)."""
        segments = (
            self.adapter.generation_segments(context, n_images)
            if generation
            else self.adapter.prompt_segments(context, n_images)
        )
        if not segments or not isinstance(segments[-1], str):
            raise ValueError(f"{self.adapter.name}: prompt_segments must end with a text piece")
        parts: list[list[int] | ImageSlot] = []
        for seg in segments[:-1]:
            if isinstance(seg, TokenIds):
                parts.append(list(seg.ids))
            else:
                parts.append(seg if isinstance(seg, ImageSlot) else self.adapter.tokenize(seg))
        return parts, segments[-1]

    def layout(
        self, context: str, continuation: str = "", n_images: int = 1, generation: bool = False
    ) -> PromptLayout:
        """What is fed and scored for one request (`generation`: the free-text prompt).

        For a native adapter the prefix is the prompt's text tokens (each image one
        placeholder token, which its processor expands)."""
        if self.native:
            text = (self.adapter.generation_text if generation else self.adapter.prompt_text)(
                context, n_images
            )
            if generation or not continuation:
                return PromptLayout(tuple(self.adapter.text_ids(text)), ())
            drop, (split,) = native.split_options(self.adapter, text, [continuation])
            prefix = self.adapter.text_ids(text)
            prefix = prefix[: len(prefix) - drop]
            fed_ctx = split.fed[: len(split.fed) - split.n_scored]
            return PromptLayout(tuple(prefix + fed_ctx), tuple(split.fed[-split.n_scored :]))
        parts, last = self._prefix_parts(context, n_images, generation)
        if generation or not continuation:
            ctx_last, option = (self.adapter.tokenize(last) if last else []), []
        else:
            ctx_last, option = self.split_continuation(last, continuation)
        prefix: list[int | ImageSlot] = []
        for part in [*parts, ctx_last]:
            prefix.extend([part] if isinstance(part, ImageSlot) else part)
        return PromptLayout(tuple(prefix), tuple(option))

    def split_continuation(self, last_piece: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the last prompt piece and of the continuation, exact at the boundary.

        The adapter's `split_option` (the official scorer's rule) decides when it has one.
        Otherwise the continuation's tokens are the tail of tokenize(piece + continuation)
        whenever the piece's own tokens are a prefix of it; only when a tokenizer merges across
        the boundary do we fall back to tokenising the continuation on its own (counted in stats).
        """
        official = self.adapter.split_option(last_piece, continuation)
        if official is not None:  # the adapter's official rule (model_adapters.spans)
            return official
        # An adapter with its own rule returns None only where that rule is undefined.
        fell_back = type(self.adapter).split_option is not VisionLanguageAdapter.split_option
        ctx = self.adapter.tokenize(last_piece) if last_piece else []
        whole = self.adapter.tokenize(last_piece + continuation)
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            self.stats.boundary_fallbacks += int(fell_back)
            return ctx, whole[len(ctx) :]
        self.stats.boundary_fallbacks += 1
        return ctx, self.adapter.tokenize(continuation)

    # ----- image encoding --------------------------------------------------------------------
    def _encoding_key(self, image: Any, context: str) -> str:
        """Which encodings are interchangeable: the image, plus the text for models whose
        vision side reads the prompt (InstructBLIP's Q-Former, via `image_text`)."""
        key = image_fingerprint(image)
        if self._image_text is not None:
            key += "\x00" + self._image_text(context)
        return key

    def _encode_unique(
        self, items: Sequence[_Item], use_cache: bool = True
    ) -> dict[str, ImageEncoding]:
        """Encodings of the batch's images: each unique one encoded once, in one vision call,
        and kept in a bounded cache so images shared across tasks are not encoded again."""
        needed: OrderedDict[str, tuple[Any, str]] = OrderedDict()
        fresh: dict[str, ImageEncoding] = {}
        for item in items:
            for img in item.images:
                key = self._encoding_key(img, item.vision_text)
                if key not in self._encodings or not use_cache:
                    needed.setdefault(key, (img, item.vision_text))
        if needed:
            # Decoded ahead by the prefetcher when this batch came from `_score_requests` or
            # `generate_until`, else now, in parallel; stacked in `needed`'s order either way.
            pixels = torch.stack(
                self._images.get_many([(image_fingerprint(img), img) for img, _ in needed.values()])
            )
            kwargs = {}
            if self._image_text is not None:
                kwargs["texts"] = [self._image_text(ctx) for _, ctx in needed.values()]
            with torch.inference_mode():
                encs = self.adapter.encode_images(pixels, **kwargs)
            self.stats.vision_calls += 1
            self.stats.images_encoded += len(needed)
            fresh = dict(zip(needed, encs, strict=True))
            if not use_cache:
                return fresh
            self._encodings.update(fresh)
        out = {}
        for item in items:
            for img in item.images:
                key = self._encoding_key(img, item.vision_text)
                self._encodings.move_to_end(key)
                out[key] = self._encodings[key]
        while len(self._encodings) > max(self.encoding_cache_size, len(out)):
            self._encodings.popitem(last=False)
        return out

    def _embed_parts(
        self, parts: list[list[int] | ImageSlot], item: _Item, encodings: dict[str, ImageEncoding]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        pieces = []
        media = []
        for part in parts:
            if isinstance(part, ImageSlot):
                enc = encodings[self._encoding_key(item.images[part.index], item.vision_text)]
                pieces.append(enc.slot_embeds.to(self.adapter.device, self.adapter.dtype))
                if enc.media is not None:
                    media.append(enc.media)
            elif part:
                ids = torch.tensor([part], device=self.adapter.device)
                pieces.append(self.adapter.embed_tokens(ids)[0])
        embeds = torch.cat(pieces, dim=0)
        return embeds, (torch.stack(media) if media else None)

    def _limit_images(self, images: list[Any]) -> list[Any]:
        cap = self.adapter.max_images
        return images[:cap] if cap is not None else images

    # ----- prefix pass -----------------------------------------------------------------------
    def _run_prefix(self, prefixes: list[torch.Tensor], media: list[torch.Tensor | None]):
        """Left-padded batch forward of the prefixes; returns last logits, cache, mask, lengths."""
        lengths = [p.shape[0] for p in prefixes]
        width = max(lengths)
        d = prefixes[0].shape[-1]
        embeds = prefixes[0].new_zeros((len(prefixes), width, d))
        mask = torch.zeros((len(prefixes), width), dtype=torch.long, device=embeds.device)
        for i, p in enumerate(prefixes):
            embeds[i, width - p.shape[0] :] = p
            mask[i, width - p.shape[0] :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        media_batch = torch.stack(media) if media and media[0] is not None else None
        logits, cache = self.adapter.lm_forward(embeds, mask, positions, None, media_batch)
        self.stats.prefix_forwards += 1
        # A sharded model's logits come off its last device; the engine works on the first one.
        return (
            logits[:, -1, :].float().to(embeds.device),
            cache,
            mask,
            torch.tensor(lengths, device=embeds.device),
            media_batch,
        )

    # ----- loglikelihood ---------------------------------------------------------------------
    def _vision_text(self, context: str, continuation: str) -> str:
        return context + continuation if self.adapter.image_text_reads_option else context

    def _group(self, requests: list[Any]) -> list[_Item]:
        """Option requests sharing a prefix. When the vision side reads the option too
        (`image_text_reads_option`), the image embeddings differ per option, so nothing before
        the option is shared: each option is its own one-option item."""
        groups: OrderedDict[tuple, _Item] = OrderedDict()
        for i, req in enumerate(requests):
            context, continuation, images = self._unpack(req)
            images = self._limit_images(images)
            vision_text = self._vision_text(context, continuation)
            key = (context, vision_text, tuple(image_fingerprint(im) for im in images))
            item = groups.get(key)
            if item is None:
                item = groups[key] = _Item(context, images, vision_text=vision_text)
            item.request_idx.append(i)
            item.continuations.append(continuation)
        return list(groups.values())

    @property
    def native(self) -> bool:
        """The adapter runs its model's own processor and forward (`model_adapters.native`)."""
        return isinstance(self.adapter, NativeAdapter)

    def _load_image(self, image: Any) -> Any:
        """What the model side takes of one image: decoded pixels for a native adapter (its
        processor runs in the batch), the adapter's preprocessed tensor otherwise. Runs in the
        prefetcher's workers (forked processes or threads)."""
        rgb = load_rgb(image)
        return rgb if self.native else self.adapter.preprocess(rgb)

    def _images_to_load(self, items: Sequence[_Item]) -> list[tuple[str, Any]]:
        """The images a batch will need pixels of: all for a native adapter, else those whose
        encoding is not cached (asked when the batch enters the prefetch lookahead)."""
        return [
            (image_fingerprint(img), img)
            for item in items
            for img in item.images
            if self.native or self._encoding_key(img, item.vision_text) not in self._encodings
        ]

    def _pixels(self, items: Sequence[_Item]) -> list[list[Image.Image]]:
        flat = self._images.get_many(
            [(image_fingerprint(im), im) for item in items for im in item.images]
        )
        out, k = [], 0
        for item in items:
            out.append(flat[k : k + len(item.images)])
            k += len(item.images)
        return out

    def _item_tokens(self, item: _Item) -> tuple:
        """The prompt parts, last text piece and each option's (context ids, option ids)."""
        if item.tokens is None:
            parts, last = self._prefix_parts(item.context, len(item.images))
            item.tokens = (
                parts,
                last,
                [self.split_continuation(last, c) for c in item.continuations],
            )
        return item.tokens

    def _length_key(self, item: _Item) -> tuple[int, int]:
        """(prompt tokens, longest option's tokens) of an item; images are left out, every item
        of a batch showing the same number of them."""
        if self.native:
            layouts = [self.layout(item.context, c, len(item.images)) for c in item.continuations]
            return len(layouts[0].prefix), max(len(lay.option) for lay in layouts)
        parts, _, splits = self._item_tokens(item)
        shared = len(_common_prefix([c for c, _ in splits]))  # fed with the prompt
        prompt = sum(len(p) for p in parts if not isinstance(p, ImageSlot)) + shared
        return prompt, max(len(c) + len(o) for c, o in splits) - shared

    @torch.inference_mode()
    def score_items(self, items: Sequence[_Item]) -> list[list[OptionScore]]:
        """Scores of every option of every item, with one prefix pass for the whole batch."""
        if self.native:
            scored = native.score_items(
                self.adapter,
                [it.context for it in items],
                self._pixels(items),
                [it.continuations for it in items],
            )
            self.stats.prefix_forwards += 1
            self.stats.option_forwards += 1
            return [[OptionScore(*s) for s in item] for item in scored]
        encodings = self._encode_unique(items)
        prefixes, media, option_ids = [], [], []
        for item in items:
            parts, _, splits = self._item_tokens(item)
            # The options share the context up to where their context ids part (an official
            # rule may leave a token such as "▁" unscored); the rest is fed, not scored.
            ctx_last = _common_prefix([ctx for ctx, _ in splits])
            embeds, item_media = self._embed_parts(parts + [ctx_last], item, encodings)
            prefixes.append(embeds)
            media.append(item_media)
            option_ids.append(
                [(ctx[len(ctx_last) :] + opt, len(ctx) - len(ctx_last)) for ctx, opt in splits]
            )
        last_logits, cache, mask, lengths, media_batch = self._run_prefix(prefixes, media)
        last_logp = torch.log_softmax(last_logits, dim=-1)
        self.stats.prefix_tokens += mask.numel()
        self.stats.prefix_padding += mask.numel() - sum(p.shape[0] for p in prefixes)

        # Row indices stay on the CPU for the cache: its layers may sit on several devices.
        rows_cpu = torch.tensor([i for i, opts in enumerate(option_ids) for _ in opts])
        rows = rows_cpu.to(mask.device)
        flat = [ids for opts in option_ids for ids, _ in opts]
        width = max(len(ids) for ids in flat)
        pad = 0
        tok = torch.full((len(flat), width), pad, dtype=torch.long, device=mask.device)
        opt_mask = torch.zeros((len(flat), width), dtype=torch.long, device=mask.device)
        for r, ids in enumerate(flat):
            tok[r, : len(ids)] = torch.tensor(ids, device=mask.device)
            opt_mask[r, : len(ids)] = 1
        self.stats.option_tokens += tok.numel()
        self.stats.option_padding += tok.numel() - sum(len(ids) for ids in flat)
        cache = select_cache_rows(cache, rows_cpu)
        full_mask = torch.cat([mask.index_select(0, rows), opt_mask], dim=1)
        positions = lengths.index_select(0, rows)[:, None] + torch.arange(width, device=mask.device)
        row_media = (
            media_batch.index_select(0, rows.to(media_batch.device))
            if media_batch is not None
            else None
        )
        logits, _ = self.adapter.lm_forward(
            self.adapter.embed_tokens(tok), full_mask, positions, cache, row_media
        )
        self.stats.option_forwards += 1
        logp = torch.log_softmax(logits.float().to(mask.device), dim=-1)

        out: list[list[OptionScore]] = []
        r = 0
        for i, opts in enumerate(option_ids):
            scores = []
            for ids, skip in opts:  # the first `skip` ids are context: fed, not scored
                t = torch.tensor(ids, device=mask.device)
                step = torch.cat([last_logp[i, None], logp[r, : len(ids) - 1]])
                lp = step.gather(-1, t[:, None]).squeeze(-1)[skip:]
                greedy = bool((step.argmax(-1) == t)[skip:].all())
                scores.append(OptionScore(float(lp.sum()), greedy, len(ids) - skip))
                r += 1
            out.append(scores)
        return out

    def _score_requests(
        self,
        requests: list[Any],
        desc: str,
        scorer: Callable[[Sequence[_Item]], list[list[OptionScore]]],
        order: Callable[[_Item], Any] | None = None,
    ) -> list[OptionScore]:
        """Score the requests not in the journal, batch by batch, journaling each score.

        `order`: a sort key for items within an image-count bucket (the length order of
        `score_items`), longest first; None keeps lm-eval's order."""
        results: list[OptionScore | None] = [None] * len(requests)
        keys = []
        for i, req in enumerate(requests):
            ctx, cont, images = self._unpack(req)
            key = self._key("loglikelihood", ctx, cont, self._limit_images(images))
            keys.append(key)
            cached = self.store.get(key)
            if cached is not None:
                results[i] = OptionScore.from_json(cached)
                self.stats.requests_resumed += 1
        pending = [i for i, r in enumerate(results) if r is None]
        items = self._group([requests[i] for i in pending])
        for item in items:
            item.request_idx = [pending[j] for j in item.request_idx]
        bar = tqdm(total=len(items), desc=desc, disable=not self.show_progress, unit="item")
        batches = _batches(items, self.batch_size, lambda it: len(it.images), order)
        # Only the loop holds the stream: leaving it by an error closes it, which cancels the
        # decoding of batches that will not run.
        for batch in self._images.stream(batches, self._images_to_load):
            for item, scores in zip(batch, scorer(batch), strict=True):
                for idx, score in zip(item.request_idx, scores, strict=True):
                    results[idx] = score
                    self.store.put(keys[idx], score.to_json())
                    self.stats.requests_scored += 1
                    if getattr(self, "cache_hook", None) is not None:
                        self.cache_hook.add_partial(
                            "loglikelihood",
                            requests[idx].args if hasattr(requests[idx], "args") else requests[idx],
                            score,
                        )
                self.stats.items += 1
            bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    def score_for(self, args: tuple) -> OptionScore:
        """The stored score of one request's args (lm-eval's sample log keeps plain tuples)."""
        ctx, cont, images = self._unpack(args)
        return OptionScore.from_json(
            self.store.done[self._key("loglikelihood", ctx, cont, self._limit_images(images))]
        )

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[OptionScore]:
        if self.mc_mode == "generate":
            return self._score_requests(requests, "Multiple choice (generate)", self._mc_generate)
        return self._score_requests(
            requests, "Scoring options", self.score_items, self._length_key if self.bucket else None
        )

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False):
        raise NotImplementedError("CheXbench tasks do not use rolling log-likelihood")

    # ----- the naive reference (official evaluation's per-option full forward) ------------
    @torch.inference_mode()
    def score_naive(self, context: str, continuation: str, images: Sequence[Any]) -> OptionScore:
        """One full forward of image(s) + prompt + option, vision encoder included, no cache.

        This is what the official evaluation does per option; the benchmark and the adapter
        conformance check compare the engine against it.
        """
        images = self._limit_images(list(images))
        item = _Item(
            context,
            images,
            [0],
            [continuation],
            vision_text=self._vision_text(context, continuation),
        )
        if self.native:
            return OptionScore(
                *native.reference_score(
                    self.adapter, context, continuation, self._pixels([item])[0]
                )
            )
        encodings = self._encode_unique([item], use_cache=False)
        parts, last = self._prefix_parts(context, len(images))
        ctx_last, cont = self.split_continuation(last, continuation)
        embeds, media = self._embed_parts(parts + [ctx_last, cont], item, encodings)
        n = embeds.shape[0]
        mask = torch.ones((1, n), dtype=torch.long, device=embeds.device)
        positions = torch.arange(n, device=embeds.device)[None]
        logits, _ = self.adapter.lm_forward(
            embeds[None], mask, positions, None, media[None] if media is not None else None
        )
        logp = torch.log_softmax(logits[0].float().to(embeds.device), dim=-1)
        t = torch.tensor(cont, device=embeds.device)
        start = n - len(cont)
        sel = logp[start - 1 : n - 1]
        ll = sel.gather(-1, t[:, None]).sum()
        greedy = bool((sel.argmax(-1) == t).all())
        return OptionScore(float(ll), greedy, len(cont))

    # ----- generation ------------------------------------------------------------------------
    def generation_settings(self) -> dict[str, Any]:
        """What the run card records about free-text decoding, and the template's hash."""
        official = self.adapter.generation
        if self.native:
            templates = {n: self.adapter.generation_text("{context}", n) for n in (0, 1, 2)}
            mc = {n: self.adapter.prompt_text("{context}", n) for n in (0, 1, 2)}
        else:
            templates = {
                n: _segments_repr(self.adapter.generation_segments("{context}", n))
                for n in (0, 1, 2)
            }
            mc = {
                n: _segments_repr(self.adapter.prompt_segments("{context}", n)) for n in (0, 1, 2)
            }
        return {
            "decoding": "greedy",
            "max_new_tokens": self.max_gen_toks or official.max_new_tokens,
            "official_max_new_tokens": official.max_new_tokens,
            "source": official.source,
            "deviations": list(official.deviations)
            + (
                [
                    f"max_new_tokens overridden to {self.max_gen_toks} (official "
                    f"{official.max_new_tokens})"
                ]
                if self.max_gen_toks not in (None, official.max_new_tokens)
                else []
            ),
            "stop_strings": list(official.stop_strings),
            "postprocess": type(self.adapter).postprocess_generation.__qualname__,
            "generation_template_sha256": _sha(templates),
            "mc_template_sha256": _sha(mc),
            "mc_generate_max_new_tokens": MC_MAX_NEW_TOKENS,
        }

    @torch.inference_mode()
    def _generate_batch(
        self,
        contexts: list[str],
        images: list[list[Any]],
        until: list[list[str]],
        max_new: int,
        stop_when: Callable[[str], bool] | None = None,
    ) -> list[str]:
        items = [_Item(c, im) for c, im in zip(contexts, images, strict=True)]
        # The model's own stop strings (its official generate() wrapper) join the task's.
        until = [[*stops, *self.adapter.generation.stop_strings] for stops in until]
        if self.native:
            self.stats.generated += len(items)
            return native.generate(
                self.adapter, contexts, self._pixels(items), max_new, until, stop_when
            )
        encodings = self._encode_unique(items)
        prefixes, media = [], []
        for item in items:
            parts, last = self._prefix_parts(item.context, len(item.images), generation=True)
            tail = self.adapter.tokenize(last) if last else []
            embeds, item_media = self._embed_parts(parts + [tail], item, encodings)
            prefixes.append(embeds)
            media.append(item_media)
        last_logits, cache, mask, lengths, media_batch = self._run_prefix(prefixes, media)
        eos = set(self.adapter.eos_token_ids)
        out_ids: list[list[int]] = [[] for _ in items]
        done = [False] * len(items)
        texts = [""] * len(items)
        logits = last_logits
        positions = lengths.clone()
        for _ in range(max_new):
            next_ids = logits.argmax(-1)
            for i, t in enumerate(next_ids.tolist()):
                if done[i]:
                    continue
                if t in eos:
                    done[i] = True
                    continue
                out_ids[i].append(t)
                texts[i] = self.adapter.decode(out_ids[i])
                if any(s and s in texts[i] for s in until[i]):
                    done[i] = True
                if stop_when is not None and stop_when(texts[i]):
                    done[i] = True
            if all(done):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_logits, cache = self.adapter.lm_forward(
                self.adapter.embed_tokens(next_ids[:, None]),
                mask,
                positions[:, None],
                cache,
                media_batch,
            )
            positions = positions + 1
            logits = step_logits[:, -1, :].float().to(mask.device)
        results = []
        for text, stops in zip(texts, until, strict=True):
            for s in stops:
                if s and s in text:
                    text = text[: text.index(s)]
            results.append(text)
        self.stats.generated += len(results)
        return results

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        pending = []
        # The model's official limit, unless the user set one (--max-gen-toks, or lm-eval's
        # --gen_kwargs max_gen_toks=...); the task YAMLs deliberately set none.
        default = self.max_gen_toks or self.adapter.generation.max_new_tokens
        for i, req in enumerate(requests):
            ctx, kwargs, images = self._unpack(req)
            images = self._limit_images(images)
            kwargs = dict(kwargs or {})
            kwargs["max_gen_toks"] = int(kwargs.get("max_gen_toks", default))
            key = self._key(
                "generate_until",
                ctx,
                {k: v for k, v in kwargs.items() if k in ("until", "max_gen_toks")},
                images,
            )
            cached = self.store.get(key)
            if cached is not None:
                results[i] = cached
                self.stats.requests_resumed += 1
            else:
                pending.append((i, ctx, kwargs, images, key))
        bar = tqdm(
            total=len(pending), desc="Generating", disable=not self.show_progress, unit="item"
        )
        batches = _batches(pending, self.batch_size, lambda p: len(p[3]))
        for batch in self._images.stream(
            batches, lambda b: self._images_to_load([_Item(p[1], p[3]) for p in b])
        ):
            untils = [_as_list(kw.get("until")) for _, _, kw, _, _ in batch]
            max_new = max(kw["max_gen_toks"] for _, _, kw, _, _ in batch)
            texts = self._generate_batch(
                [b[1] for b in batch], [b[3] for b in batch], untils, max_new
            )
            for (i, _, _, _, key), text in zip(batch, texts, strict=True):
                text = self.adapter.postprocess_generation(text)  # the official clean-up
                results[i] = text
                self.store.put(key, text)
                self.stats.requests_scored += 1
            bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    # ----- generation-based multiple choice --------------------------------------------------
    def mc_prompt(self, question: str, options: list[str]) -> str:
        """The official CheXagent-2 lettered prompt (the module's `mc_prompt`)."""
        return mc_prompt(question, options)

    def _mc_generate(self, items: Sequence[_Item]) -> list[list[OptionScore]]:
        prompts = [
            self.mc_prompt(it.context.strip(), [c.strip() for c in it.continuations])
            for it in items
        ]
        texts = self._generate_batch(
            prompts,
            [it.images for it in items],
            [[] for _ in items],
            MC_MAX_NEW_TOKENS,
            stop_when=lambda text: _LETTER_RE.search(text) is not None,
        )
        out = []
        for item, text in zip(items, texts, strict=True):
            choice = mc_choice(text, len(item.continuations))
            out.append(
                [
                    OptionScore(
                        0.0 if k == choice else float("-inf"),
                        k == choice,
                        1,
                        unparseable=choice < 0,
                        generated=text,
                    )
                    for k in range(len(item.continuations))
                ]
            )
        return out


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    first = seqs[0]
    n = len(first)
    for other in seqs[1:]:
        n = next(
            (k for k, (a, b) in enumerate(zip(first[:n], other, strict=False)) if a != b),
            min(n, len(other)),
        )
    return first[:n]


def _batches(
    items: list,
    size: int,
    n_images: Callable[[Any], int],
    order: Callable[[Any], Any] | None = None,
) -> list[list]:
    """Batches of at most `size`, never mixing image counts (media tensors must stack).

    With `order`, each image-count bucket is sorted by it, largest first (stable: ties keep
    their order), so a batch pads little and the first batch is the largest (an out-of-memory
    batch fails at the start, not hours in)."""
    buckets: OrderedDict[int, list] = OrderedDict()
    for item in items:
        buckets.setdefault(n_images(item), []).append(item)
    if order is not None:
        for group in buckets.values():
            group.sort(key=order, reverse=True)
    return [group[i : i + size] for group in buckets.values() for i in range(0, len(group), size)]


def _segments_repr(segments: Sequence[Any]) -> list[Any]:
    return [repr(s) for s in segments]


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
