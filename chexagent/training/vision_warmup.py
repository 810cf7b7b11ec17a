"""Supervised warm-up of a from-scratch ViT and Q-Former on image labels (demo deviation).

WHY: the paper starts from a pretrained vision encoder (EVA-CLIP-g) and a BERT-initialised
Q-Former. The demo model starts from random weights, and stage 1's ITC/IC through a random
Q-Former does not make a random ViT encode the diseases within a CPU budget (a probe on its
outputs stayed at the base rate, while the same ViT trained directly on labels reached ~98%).
This step stands in for "pretrained": each image's labels (the processor's structured
`meta["labels"]`, e.g. "pleural effusion", "pleural effusion: left"; else its caption's
phrases) are multi-label targets for two throw-away linear heads, one on the ViT's patch tokens
and one on the Q-Former's query outputs. The heads are discarded; the ViT, the Q-Former and the
queries carry over into stage 1.

- Each head reads the mean AND the max over its tokens. With the mean alone, findings that
  cover a few patches (a nodule, a pleural line, a band of atelectasis) are averaged away: a
  probe stayed near the base rate for pneumothorax (0.87, base 0.80) and nodules; with mean+max
  it reached 0.99 and 0.97 (docs/training.md).
- The Q-Former head reads the ViT's tokens detached: its gradient reaching into the ViT slowed
  the ViT's own learning (pneumothorax probe on the ViT 0.84 with it, 0.94 without).
- Sides and sizes are labels of their own, so "left" is learned across findings rather than
  once per (finding, side, size) combination, which too few images show.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from chexagent.forward import read_patches
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
from chexagent.training.trainer import cosine_schedule


def caption_phrases(text: str) -> list[str]:
    """Split a label caption into its phrases: sentences, then comma-separated items."""
    return [p.strip().lower() for p in re.split(r"[.,;]", text) if p.strip()]


def mean_max_pool(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, 2H): the mean and the max over the tokens."""
    return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)


def label_targets(
    instances: Sequence[Instance], min_count: int
) -> tuple[list[str], list[str], torch.Tensor]:
    """(image paths, label vocabulary, multi-hot targets) from the single-image captions: the
    structured labels a processor attached (`meta["labels"]`), else the caption's phrases."""
    rows = [
        (i.images[0], i.meta.get("labels") or caption_phrases(i.answer))
        for i in instances
        if i.template_format in CAPTION_FORMATS and len(i.images) == 1
    ]
    counts = Counter(p for _, phrases in rows for p in set(phrases))
    vocab = sorted(p for p, c in counts.items() if min_count <= c < len(rows))
    if not vocab:
        raise ValueError(
            "vision warm-up: no caption phrase labels enough images "
            f"(min_count={min_count}); the data holds {len(rows)} captions"
        )
    index = {p: k for k, p in enumerate(vocab)}
    targets = torch.zeros(len(rows), len(vocab))
    for r, (_, phrases) in enumerate(rows):
        for p in phrases:
            if p in index:
                targets[r, index[p]] = 1.0
    return [path for path, _ in rows], vocab, targets


def warm_up_vision(
    bundle: CheXagentBundle,
    instances: Sequence[Instance],
    cfg: VisionWarmupConfig,
    seed: int = 0,
    show_progress: bool = True,
) -> list[dict[str, float]]:
    """Train the ViT, the Q-Former and its queries in place; returns the loss log (one row per
    step). Everything else (the LM, the bridger) is untouched."""
    paths, vocab, targets = label_targets(instances, cfg.min_count)
    loader = ImageLoader(bundle.image_processor)
    model = bundle.model
    parts = [model.vision_model, model.qformer]
    torch.manual_seed(seed)
    vit_head = torch.nn.Linear(2 * model.config.vision_config.hidden_size, len(vocab))
    query_head = torch.nn.Linear(2 * model.config.qformer_config.hidden_size, len(vocab))
    for part in parts:
        part.requires_grad_(True).train()
    model.query_tokens.requires_grad_(True)
    params = [p for part in (*parts, vit_head, query_head) for p in part.parameters()]
    params.append(model.query_tokens)
    opt = torch.optim.AdamW(
        params, lr=cfg.lr_peak, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=WEIGHT_DECAY
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(cfg))
    gen = torch.Generator().manual_seed(seed)
    log = []
    bar = tqdm(range(cfg.max_steps), desc="vision warm-up", disable=not show_progress, leave=False)
    for step in bar:
        idx = torch.randint(0, len(paths), (cfg.batch,), generator=gen)
        patches = model.vision_model(
            pixel_values=torch.stack([loader(paths[i]) for i in idx.tolist()])
        ).last_hidden_state
        queries = read_patches(model, patches.detach())
        vit_loss = F.binary_cross_entropy_with_logits(
            vit_head(mean_max_pool(patches)), targets[idx]
        )
        query_loss = F.binary_cross_entropy_with_logits(
            query_head(mean_max_pool(queries)), targets[idx]
        )
        loss = vit_loss + query_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        schedule.step()
        log.append(
            {
                "step": step + 1,
                "loss": float(loss.detach()),
                "vit": float(vit_loss.detach()),
                "query": float(query_loss.detach()),
                "lr": schedule.get_last_lr()[0],
            }
        )
        bar.set_postfix(vit=f"{log[-1]['vit']:.4f}", query=f"{log[-1]['query']:.4f}")
    for part in parts:
        part.requires_grad_(False).eval()
    model.query_tokens.requires_grad_(False)
    return log
