"""Supervised warm-up of a from-scratch vision encoder on label captions (demo deviation).

WHY: the paper starts stage 1 from a pretrained vision encoder. The tiny demo ViT starts from
random weights, and stage 1's ITC/IC through a from-scratch Q-Former does not make it encode the
diseases within a CPU budget (a probe on its outputs stays at the base rate, while the same ViT
trained directly on labels reaches ~98%). This step stands in for "pretrained": the ViT (mean
pooled, plus a throw-away linear head) learns to predict the phrases of each image's label
caption ("PA view. cardiomegaly, left pleural effusion.") as a multi-label target. The head is
discarded; only the ViT weights carry over into stage 1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from chexagent.instruct.schema import Instance
from chexagent.modeling import CheXagentBundle
from chexagent.training.config import (
    ADAM_BETAS,
    ADAM_EPS,
    GRAD_CLIP,
    WEIGHT_DECAY,
    VisionWarmupConfig,
)
from chexagent.training.data import CAPTION_FORMATS, ImageLoader


def caption_phrases(text: str) -> list[str]:
    """Split a label caption into its phrases: sentences, then comma-separated items."""
    return [p.strip().lower() for p in re.split(r"[.,;]", text) if p.strip()]


def label_targets(instances: Sequence[Instance], min_count: int
                  ) -> tuple[list[str], list[str], torch.Tensor]:
    """(image paths, phrase vocabulary, multi-hot targets) from the single-image captions."""
    rows = [(i.images[0], caption_phrases(i.answer)) for i in instances
            if i.template_format in CAPTION_FORMATS and len(i.images) == 1]
    counts = Counter(p for _, phrases in rows for p in set(phrases))
    vocab = sorted(p for p, c in counts.items() if min_count <= c < len(rows))
    if not vocab:
        raise ValueError("vision warm-up: no caption phrase labels enough images "
                         f"(min_count={min_count}); the data holds {len(rows)} captions")
    index = {p: k for k, p in enumerate(vocab)}
    targets = torch.zeros(len(rows), len(vocab))
    for r, (_, phrases) in enumerate(rows):
        for p in phrases:
            if p in index:
                targets[r, index[p]] = 1.0
    return [path for path, _ in rows], vocab, targets


def warm_up_vision(bundle: CheXagentBundle, instances: Sequence[Instance],
                   cfg: VisionWarmupConfig, seed: int = 0,
                   show_progress: bool = True) -> list[dict[str, float]]:
    """Train `bundle.model.vision_model` in place; returns the loss log (one row per step)."""
    paths, vocab, targets = label_targets(instances, cfg.min_count)
    loader = ImageLoader(bundle.image_processor)
    vision = bundle.model.vision_model
    torch.manual_seed(seed)
    head = torch.nn.Linear(vision.config.hidden_size, len(vocab))
    vision.requires_grad_(True).train()
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                            weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(seed)
    log = []
    for step in tqdm(range(cfg.max_steps), desc="vision warm-up", disable=not show_progress,
                     leave=False):
        idx = torch.randint(0, len(paths), (cfg.batch,), generator=gen)
        pixels = torch.stack([loader(paths[i]) for i in idx.tolist()])
        logits = head(vision(pixel_values=pixels).last_hidden_state.mean(1))
        loss = F.binary_cross_entropy_with_logits(logits, targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        log.append({"step": step + 1, "loss": float(loss.detach())})
    vision.requires_grad_(False).eval()
    return log
