"""The perceiver resampler shared by OpenFlamingo and RadFM (both took lucidrains' design).

It turns a variable number of vision tokens into a fixed number of latents. Written on plain
torch; the released checkpoints' key names are mapped onto these modules by each model's
`checkpoint` module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class GatedFeedForward(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, no biases (the Flamingo feed-forward)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class PerceiverAttention(nn.Module):
    """Latents attend to [media tokens; latents] (keys include the latents themselves)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = split_heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(
            q, split_heads(k, self.heads), split_heads(v, self.heads)
        )
        return self.to_out(merge_heads(out))


class PerceiverBlock(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: int):
        super().__init__()
        self.attn = PerceiverAttention(dim, dim_head, heads)
        self.ff = GatedFeedForward(dim, ff_mult)


class PerceiverResampler(nn.Module):
    """(N, n_tokens, dim) vision features of N single-frame images -> (N, num_latents, dim)."""

    def __init__(
        self,
        dim: int,
        depth: int = 6,
        dim_head: int = 64,
        heads: int = 8,
        num_latents: int = 64,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(
            PerceiverBlock(dim, dim_head, heads, ff_mult) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        for block in self.layers:
            latents = block.attn(media, latents) + latents
            latents = block.ff(latents) + latents
        return self.norm(latents)


def perceiver_key_map(src_prefix: str, dst_prefix: str, depth: int) -> dict[str, str]:
    """Released lucidrains-style names (`layers.i.0` attention, `layers.i.1.{0,1,3}` FF) -> ours."""
    out = {f"{src_prefix}latents": f"{dst_prefix}latents"}
    for p in ("weight", "bias"):
        out[f"{src_prefix}norm.{p}"] = f"{dst_prefix}norm.{p}"
    for i in range(depth):
        s, d = f"{src_prefix}layers.{i}.", f"{dst_prefix}layers.{i}."
        for n in ("norm_media", "norm_latents"):
            for p in ("weight", "bias"):
                out[f"{s}0.{n}.{p}"] = f"{d}attn.{n}.{p}"
        for n in ("to_q", "to_kv", "to_out"):
            out[f"{s}0.{n}.weight"] = f"{d}attn.{n}.weight"
        out.update(feed_forward_key_map(f"{s}1.", f"{d}ff."))
    return out


def feed_forward_key_map(src_prefix: str, dst_prefix: str) -> dict[str, str]:
    """`nn.Sequential(LayerNorm, Linear, GELU, Linear)` indices -> norm/fc1/fc2."""
    return {
        f"{src_prefix}0.weight": f"{dst_prefix}norm.weight",
        f"{src_prefix}0.bias": f"{dst_prefix}norm.bias",
        f"{src_prefix}1.weight": f"{dst_prefix}fc1.weight",
        f"{src_prefix}3.weight": f"{dst_prefix}fc2.weight",
    }
