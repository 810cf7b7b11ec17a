"""What each stage reads from a CheXinstruct store, and how examples become tensors.

- stage 0: text only ("question answer" of every instance: the clinical text of the corpus);
- stages 1 and 2: image-caption pairs (findings / impression generation instances with images);
- stage 3: every instance of the stage-3 mixture, laid out by `chexagent.prompting`.

Batches are a pure function of (seed, micro-batch number), so a resumed run reads exactly the
batches the interrupted run would have read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import BlipImageProcessor, PreTrainedTokenizerBase

from chexagent.instruct.schema import Instance
from chexagent.prompting import IGNORE_INDEX, build_inputs
from harness.images import open_image

CAPTION_FORMATS = {"findings_generation", "impression_generation"}


def stage_examples(stage: int, instances: Iterable[Instance]) -> list[Instance]:
    if stage == 0:
        return list(instances)
    if stage in (1, 2):
        return [i for i in instances if i.template_format in CAPTION_FORMATS and i.images]
    return list(instances)


@dataclass
class BatchSchedule:
    """Micro-batch k = a slice of the permutation of epoch (k * size // n), seeded per epoch."""

    n: int
    size: int
    seed: int
    _perms: dict[int, list[int]] = field(default_factory=dict)

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def indices(self, k: int) -> list[int]:
        if self.n == 0:
            raise ValueError("no training examples for this stage")
        out, start = [], k * self.size
        for pos in range(start, start + self.size):
            out.append(self._perm(pos // self.n)[pos % self.n])
        return out


class ImageLoader:
    """Path -> normalised pixel tensor, cached (phantom/demo sets fit in memory)."""

    def __init__(self, processor: BlipImageProcessor, cache: bool = True):
        self.processor = processor
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None

    def __call__(self, path: str) -> torch.Tensor:
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        if not Path(path).is_file():
            raise FileNotFoundError(f"training image {path} not found (check --source folders)")
        # The benchmark's decoder (DICOM, 16-bit PNG/TIFF), so training sees what scoring sees.
        pixels = self.processor(open_image(path), return_tensors="pt")["pixel_values"][0]
        if self.cache is not None:
            self.cache[path] = pixels
        return pixels


class QueryCache:
    """Path -> frozen Q-Former output, for stages 2-3 where vision and Q-Former do not train:
    each image goes through the ViT once instead of once per step."""

    def __init__(self, model, images: ImageLoader):
        self.model, self.images = model, images
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, path: str) -> torch.Tensor:
        if path not in self.cache:
            self.warm([path])
        return self.cache[path]

    def warm(self, paths: Iterable[str], batch_size: int = 64) -> None:
        """Encode the not-yet-cached images in batches (much faster than one by one)."""
        from chexagent.forward import query_features

        todo = sorted({p for p in paths if p not in self.cache})
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            feats = query_features(self.model, torch.stack([self.images(p) for p in chunk]))
            self.cache.update(zip(chunk, feats, strict=True))
            for p in chunk:  # the pixels are no longer needed once encoded
                if self.images.cache is not None:
                    self.images.cache.pop(p, None)


def _pad(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def collate_text(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Instance], seq_len: int
) -> dict[str, torch.Tensor]:
    rows = []
    for inst in examples:
        ids = tokenizer(f"{inst.question} {inst.answer}", add_special_tokens=True)["input_ids"]
        rows.append((ids + [tokenizer.eos_token_id])[:seq_len])
    input_ids = _pad(rows, tokenizer.pad_token_id)
    mask = _pad([[1] * len(r) for r in rows], 0)
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def collate_captions(
    tokenizer: PreTrainedTokenizerBase,
    images: ImageLoader,
    examples: Sequence[Instance],
    seq_len: int,
) -> dict[str, torch.Tensor]:
    """Stage 1: one image and its caption (the answer text) per example."""
    rows = [
        tokenizer(inst.answer, add_special_tokens=True)["input_ids"][:seq_len] for inst in examples
    ]
    return {
        "pixel_values": torch.stack([images(inst.images[0]) for inst in examples]),
        "text_ids": _pad(rows, tokenizer.pad_token_id),
        "text_mask": _pad([[1] * len(r) for r in rows], 0),
    }


def collate_prompted(
    tokenizer: PreTrainedTokenizerBase,
    images: ImageLoader | QueryCache,
    examples: Sequence[Instance],
    seq_len: int,
    num_query_tokens: int,
    max_images: int,
) -> dict[str, torch.Tensor]:
    """Stages 2 and 3: image slots + chat template + answer (+EOS); loss on the answer only."""
    ids, labels, pixels = [], [], []
    for inst in examples:
        paths = inst.images[:max_images]
        built = build_inputs(
            tokenizer,
            inst.question,
            inst.answer,
            num_images=len(paths),
            num_query_tokens=num_query_tokens,
            add_eos=True,
            max_length=seq_len,
        )
        ids.append(built.input_ids)
        labels.append(built.labels)
        pixels.extend(images(p) for p in paths)
    input_ids = _pad(ids, tokenizer.pad_token_id)
    key = "cached_queries" if isinstance(images, QueryCache) else "pixel_values"
    return {
        "input_ids": input_ids,
        "attention_mask": _pad([[1] * len(r) for r in ids], 0),
        "labels": _pad(labels, IGNORE_INDEX),
        "pixel_values": None,
        "cached_queries": None,
        key: torch.stack(pixels) if pixels else None,
    }
