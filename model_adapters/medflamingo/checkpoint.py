"""Loader for the released Med-Flamingo `model.pt` (open-flamingo 0.0.2 key names).

open-flamingo 0.0.2 saved only the trainable parameters on top of the frozen LLaMA-7B and CLIP
ViT-L/14, so `model.pt` holds (names as in the released file):

- `perceiver.latents`, `perceiver.norm.*`, `perceiver.layers.{i}.0.{norm_media,norm_latents,
  to_q,to_kv,to_out}.*` (attention), `perceiver.layers.{i}.1.{0,1,3}.*` (LayerNorm, Linear,
  Linear)  ->  `perceiver.layers.{i}.attn.*`, `perceiver.layers.{i}.ff.{norm,fc1,fc2}.*`;
- `lang_encoder.gated_cross_attn_layers.{i}.{attn.norm,attn.to_q,attn.to_kv,attn.to_out,attn_gate,
  ff.0,ff.1,ff.3,ff_gate}` for i = 3, 7, ..., 31  ->  `cross_attn.{i // 4}.*`; the same tensors
  again under `lang_encoder.model.layers.{i}.gated_cross_attn_layer.*` (the block was registered
  twice; the copies must be equal);
- `lang_encoder.model.embed_tokens.weight` (LLaMA's 32000 rows + `<|endofchunk|>`, `<image>`,
  `<PAD>`)  ->  `language_model.model.embed_tokens.weight`;
- `...rotary_emb.inv_freq` buffers: dropped, transformers recomputes them.

A fuller file is accepted too: `lang_encoder.model.layers.{i}.decoder_layer.*`,
`lang_encoder.model.norm.weight`, `lang_encoder.lm_head.weight` override the LLaMA folder's
weights, and open_clip's `vision_encoder.visual.*` override the CLIP folder's (open_clip's fused
`in_proj` is split into q/k/v); open_clip's text tower is dropped. Any other key is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import CLIPVisionModel, LlamaForCausalLM

from model_adapters.medflamingo.modeling import FlamingoSpec, MedFlamingoModel
from model_adapters.medflamingo.perceiver import feed_forward_key_map, perceiver_key_map
from model_adapters.medflamingo.state_dict import (
    CheckpointKeyError,
    KeyPlan,
    check_complete,
    convert_state_dict,
)

OPEN_CLIP_TEXT_TOWER = (
    "vision_encoder.transformer.",
    "vision_encoder.token_embedding.",
    "vision_encoder.positional_embedding",
    "vision_encoder.ln_final.",
    "vision_encoder.text_projection",
    "vision_encoder.logit_scale",
    "vision_encoder.attn_mask",
    "vision_encoder.visual.proj",
)
_VIS = "vision_encoder.visual."
_HF_VIS = "vision_encoder.vision_model."


def xattn_layer_ids(n_layers: int, every: int) -> list[int]:
    return [i for i in range(n_layers) if (i + 1) % every == 0]


def released_key_plan(
    language_model: LlamaForCausalLM, spec: FlamingoSpec, n_vision_layers: int = 0
) -> KeyPlan:
    required = perceiver_key_map("perceiver.", "perceiver.", spec.perceiver_depth)
    required["lang_encoder.model.embed_tokens.weight"] = "language_model.model.embed_tokens.weight"
    aliases: dict[str, str] = {}
    layers = language_model.model.layers
    for block, i in enumerate(xattn_layer_ids(len(layers), spec.cross_attn_every_n_layers)):
        src, dst = f"lang_encoder.gated_cross_attn_layers.{i}.", f"cross_attn.{block}."
        names = {
            "attn.norm.weight",
            "attn.norm.bias",
            "attn.to_q.weight",
            "attn.to_kv.weight",
            "attn.to_out.weight",
            "attn_gate",
            "ff_gate",
        }
        block_map = {src + n: dst + n for n in names}
        block_map.update(feed_forward_key_map(src + "ff.", dst + "ff."))
        required.update(block_map)
        alias_src = f"lang_encoder.model.layers.{i}.gated_cross_attn_layer."
        aliases.update({alias_src + k[len(src) :]: k for k in block_map})
    optional = {
        "lang_encoder.model.norm.weight": "language_model.model.norm.weight",
        "lang_encoder.lm_head.weight": "language_model.lm_head.weight",
    }
    for i, layer in enumerate(layers):
        for name in layer.state_dict():
            optional[f"lang_encoder.model.layers.{i}.decoder_layer.{name}"] = (
                f"language_model.model.layers.{i}.{name}"
            )
    return KeyPlan(
        required=required,
        optional=optional,
        aliases=aliases,
        dropped_prefixes=OPEN_CLIP_TEXT_TOWER,
        dropped_suffixes=("rotary_emb.inv_freq",),
    )


def convert_open_clip_visual(source: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip `VisionTransformer` names -> transformers `CLIPVisionModel` names."""
    out: dict[str, torch.Tensor] = {}
    simple = {
        "class_embedding": "embeddings.class_embedding",
        "positional_embedding": "embeddings.position_embedding.weight",
        "conv1.weight": "embeddings.patch_embedding.weight",
        "ln_pre.weight": "pre_layrnorm.weight",
        "ln_pre.bias": "pre_layrnorm.bias",
        "ln_post.weight": "post_layernorm.weight",
        "ln_post.bias": "post_layernorm.bias",
    }
    block = {
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "attn.out_proj": "self_attn.out_proj",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
    }
    unknown = []
    for key, t in source.items():
        if not key.startswith(_VIS) or key == _VIS + "proj":
            continue
        rest = key[len(_VIS) :]
        if rest in simple:
            out[_HF_VIS + simple[rest]] = t
            continue
        parts = rest.split(".")
        if parts[:2] != ["transformer", "resblocks"] or len(parts) < 5:
            unknown.append(key)
            continue
        i, sub, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
        dst = f"{_HF_VIS}encoder.layers.{i}."
        if sub == "attn" and kind in ("in_proj_weight", "in_proj_bias"):
            suffix = "weight" if kind == "in_proj_weight" else "bias"
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), t.chunk(3, dim=0), strict=True):
                out[f"{dst}self_attn.{name}.{suffix}"] = chunk
        elif sub in block:
            out[f"{dst}{block[sub]}.{kind}"] = t
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointKeyError(f"unexpected open_clip vision key(s): {sorted(unknown)[:12]}")
    return out


def assemble(
    checkpoint: Mapping[str, torch.Tensor],
    language_model: LlamaForCausalLM,
    vision_encoder: CLIPVisionModel,
    media_token_id: int,
    vocab_size: int,
    spec: FlamingoSpec | None = None,
    media_attention: str = "released",
    origin: str = "model.pt",
) -> MedFlamingoModel:
    """Base LLaMA + CLIP (already loaded) + the released Flamingo-side tensors -> our model.

    The Flamingo-side modules are created empty and every one of their tensors must come from
    the checkpoint (refused otherwise, with the key names).
    """
    spec = spec or FlamingoSpec()
    visual = convert_open_clip_visual(checkpoint)
    rest = {k: v for k, v in checkpoint.items() if not k.startswith(_VIS) or k == _VIS + "proj"}
    conversion = convert_state_dict(rest, released_key_plan(language_model, spec), origin)
    native = {**conversion.state_dict, **visual}
    embed = native["language_model.model.embed_tokens.weight"]
    if embed.shape[0] != vocab_size:
        raise CheckpointKeyError(
            f"{origin}: embed_tokens has {embed.shape[0]} rows but the tokenizer has {vocab_size} "
            "tokens after adding <|endofchunk|>, <image> (and <PAD>): use the original LLaMA-7B "
            "tokenizer that Med-Flamingo was trained with"
        )
    hidden = language_model.config.hidden_size
    if embed.shape[1] != hidden:
        raise CheckpointKeyError(
            f"{origin}: embed_tokens width {embed.shape[1]} != LLaMA "
            f"hidden size {hidden}: wrong base LLaMA folder?"
        )
    with init_empty_weights(include_buffers=False):
        language_model.model.embed_tokens = nn.Embedding(vocab_size, hidden)
        model = MedFlamingoModel(
            vision_encoder, language_model, media_token_id, spec, media_attention
        )
    for name in ("perceiver", "cross_attn"):
        part = {k[len(name) + 1 :]: v for k, v in native.items() if k.startswith(name + ".")}
        check_complete(getattr(model, name), part, f"{origin} ({name})")
    result = model.load_state_dict(native, strict=False, assign=True)
    if result.unexpected_keys:
        raise CheckpointKeyError(
            f"{origin}: keys with no place in the model: {sorted(result.unexpected_keys)[:12]}"
        )
    still_empty = [n for n, p in model.named_parameters() if p.is_meta]
    if still_empty:
        raise CheckpointKeyError(f"{origin}: no weights for {still_empty[:12]}")
    return model
