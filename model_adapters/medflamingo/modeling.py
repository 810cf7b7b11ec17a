"""OpenFlamingo (the architecture under Med-Flamingo) on current torch + transformers.

CLIP ViT-L/14 patch tokens -> perceiver resampler (64 latents per image) -> gated cross-attention
blocks that run before every 4th LLaMA decoder layer. The LLaMA itself stays a stock
`LlamaForCausalLM` (so its weights load from any HF LLaMA folder and `device_map` works); the
cross-attention blocks are attached with forward pre-hooks instead of re-wrapping its layers.

Which image a text token may see ("media time") follows the code Med-Flamingo ran with,
open-flamingo 0.0.2 at inference (`attend_previous=False`): an `<image>` token sees its own
image, every other token sees the image that FOLLOWS it, and tokens after the last image see no
image at all (their cross-attention output is zero; only the gated feed-forward applies). The
Flamingo paper's rule (text sees the most recent preceding image; open-flamingo >= 2.0) is
available as `media_attention="preceding"`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, LlamaForCausalLM

from model_adapters.medflamingo.perceiver import (
    GatedFeedForward,
    PerceiverResampler,
    merge_heads,
    split_heads,
)

MEDIA_ATTENTION = ("released", "preceding")


@dataclass(frozen=True)
class FlamingoSpec:
    """The Flamingo-side hyper-parameters (open-flamingo defaults; Med-Flamingo uses every 4)."""

    cross_attn_every_n_layers: int = 4
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    num_latents: int = 64
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    ff_mult: int = 4


class MaskedCrossAttention(nn.Module):
    """Text queries attend to the latents of the one image `image_index` names (0 = none)."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, x: torch.Tensor, media: torch.Tensor | None, image_index: torch.Tensor
    ) -> torch.Tensor:
        if media is None:  # no image anywhere: every token is "text without media"
            return torch.zeros_like(x)
        n_images, n_latents = media.shape[1], media.shape[2]
        q = split_heads(self.to_q(self.norm(x)), self.heads)
        k, v = self.to_kv(media.flatten(1, 2).to(x.dtype)).chunk(2, dim=-1)
        k, v = split_heads(k, self.heads), split_heads(v, self.heads)
        scores = (q * self.scale) @ k.transpose(-1, -2)
        key_image = torch.arange(1, n_images + 1, device=x.device).repeat_interleave(n_latents)
        allowed = image_index[:, None, :, None] == key_image[None, None, None, :]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1) * (image_index > 0)[:, None, :, None].to(scores.dtype)
        return self.to_out(merge_heads(attn @ v))


class GatedCrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, dim_visual: int, dim_head: int, heads: int, ff_mult: int):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, dim_head, heads)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = GatedFeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: torch.Tensor, media: torch.Tensor | None, image_index: torch.Tensor
    ) -> torch.Tensor:
        x = self.attn(x, media, image_index) * self.attn_gate.tanh() + x
        return self.ff(x) * self.ff_gate.tanh() + x


def media_time(is_media: torch.Tensor, prefix_images: int, rule: str) -> torch.Tensor:
    """Per-token 1-based index of the image it attends to (0: none), open-flamingo's rule.

    `is_media` marks `<image>` tokens in this forward's input; `prefix_images` counts those
    already consumed in the KV cache (the engine puts every image in the cached prefix), so a
    cached continuation gets exactly what a full forward would give it.
    """
    count = is_media.long().cumsum(dim=-1) + prefix_images
    total = count[:, -1:]  # images in the whole sequence, per row
    if rule == "preceding":
        return count
    if rule != "released":
        raise ValueError(f"media_attention must be one of {MEDIA_ATTENTION}, got {rule!r}")
    index = count + (~is_media).long()
    return index.masked_fill(index > total, 0)


class MedFlamingoModel(nn.Module):
    def __init__(
        self,
        vision_encoder: CLIPVisionModel,
        language_model: LlamaForCausalLM,
        media_token_id: int,
        spec: FlamingoSpec = FlamingoSpec(),
        media_attention: str = "released",
    ):
        super().__init__()
        if media_attention not in MEDIA_ATTENTION:
            raise ValueError(f"media_attention must be one of {MEDIA_ATTENTION}")
        self.spec = spec
        self.media_attention = media_attention
        self.media_token_id = int(media_token_id)
        self.vision_encoder = vision_encoder
        vis_dim = vision_encoder.config.hidden_size
        self.perceiver = PerceiverResampler(
            vis_dim,
            spec.perceiver_depth,
            spec.perceiver_dim_head,
            spec.perceiver_heads,
            spec.num_latents,
            spec.ff_mult,
        )
        self.language_model = language_model
        cfg = language_model.config
        self.xattn_layers = [
            i for i in range(cfg.num_hidden_layers) if (i + 1) % spec.cross_attn_every_n_layers == 0
        ]
        self.cross_attn = nn.ModuleList(
            GatedCrossAttentionBlock(
                cfg.hidden_size, vis_dim, spec.xattn_dim_head, spec.xattn_heads, spec.ff_mult
            )
            for _ in self.xattn_layers
        )
        self._condition: tuple[torch.Tensor | None, torch.Tensor] | None = None
        layers = language_model.model.layers
        for block, layer_idx in enumerate(self.xattn_layers):
            layers[layer_idx].register_forward_pre_hook(self._make_hook(block), with_kwargs=True)

    def _make_hook(self, block: int):
        def hook(module, args, kwargs):
            if self._condition is None:
                raise RuntimeError("Flamingo decoder layers run outside `conditioned(...)`")
            media, index = self._condition
            if args:
                return (self.cross_attn[block](args[0], media, index), *args[1:]), kwargs
            kwargs["hidden_states"] = self.cross_attn[block](kwargs["hidden_states"], media, index)
            return args, kwargs

        return hook

    @contextmanager
    def conditioned(self, media: torch.Tensor | None, image_index: torch.Tensor):
        self._condition = (media, image_index)
        try:
            yield
        finally:
            self._condition = None

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) -> (N, num_latents, vis_dim).

        Patch tokens without the CLS token and before `post_layernorm`, as open_clip's
        `output_tokens` returned them in 2023 (open_clip < 2.24).
        """
        tokens = self.vision_encoder(pixel_values=pixel_values).last_hidden_state[:, 1:]
        return self.perceiver(tokens)

    def media_marker(self) -> torch.Tensor:
        return self.language_model.get_input_embeddings().weight[self.media_token_id]

    def forward_lm(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values=None,
        media: torch.Tensor | None = None,
    ):
        """Decoder pass; `<image>` positions are found by their (exact) marker embedding."""
        marker = self.media_marker().to(inputs_embeds.device, inputs_embeds.dtype)
        is_media = (inputs_embeds == marker).all(dim=-1)
        cached = past_key_values is not None and past_key_values.get_seq_length() > 0
        prefix = media.shape[1] if (cached and media is not None) else 0
        index = media_time(is_media, prefix, self.media_attention)
        with self.conditioned(media, index):
            return self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=True,
            )
