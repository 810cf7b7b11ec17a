"""Loader for the released RadFM `pytorch_model.bin` (`MultiLLaMAForCausalLM.state_dict()`).

Released name -> ours:
- `lang_model.*` -> `language_model.*` (a stock LLaMA-13B; `rotary_emb.inv_freq` dropped);
- `embedding_layer.weight`: the same tensor as `lang_model.model.embed_tokens.weight` (tied;
  must be equal) -> not stored twice;
- `embedding_layer.figure_token_weight` -> `figure_token_embeds` (`<image>`, `</image>`);
- `embedding_layer.vision_encoder.to_patch_embedding.{1,2,3}` -> `vision_encoder.patch_norm_in`,
  `.patch_proj`, `.patch_norm_out`; `...pos_embedding.{row,col,dep}_embed` ->
  `vision_encoder.pos_{row,col,depth}`; `...transformer.layers.{i}.0.norm`, `.0.fn.to_qkv`,
  `.0.fn.to_out.0`, `.1.norm`, `.1.fn.net.0`, `.1.fn.net.3` -> `vision_encoder.layers.{i}.
  attn_norm`, `.qkv`, `.attn_out`, `.mlp_norm`, `.fc1`, `.fc2`;
- `embedding_layer.perceiver.*` -> `perceiver.*` (see medflamingo.perceiver); `embedding_layer.fc`
  -> `image_proj`;
- dropped, unused at inference (the keyword-matching and segmentation heads):
  `embedding_layer.{bert_model, bert_projection_fc, transformer_decoder, transformer_decoder_mlp,
  output_upscaling, cls_head}.*`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from accelerate import init_empty_weights
from transformers import LlamaConfig, LlamaForCausalLM

from model_adapters.medflamingo.perceiver import perceiver_key_map
from model_adapters.medflamingo.state_dict import (
    KeyPlan,
    check_complete,
    convert_state_dict,
)
from model_adapters.radfm.modeling import RadFMModel, RadFMVisionSpec

_E = "embedding_layer."
UNUSED_HEADS = tuple(
    _E + n
    for n in (
        "bert_model.",
        "bert_projection_fc.",
        "transformer_decoder.",
        "transformer_decoder_mlp.",
        "output_upscaling.",
        "cls_head.",
    )
)


def released_key_plan(model: RadFMModel) -> KeyPlan:
    spec = model.spec
    req: dict[str, str] = {
        f"lang_model.{k}": f"language_model.{k}" for k in model.language_model.state_dict()
    }
    req[_E + "figure_token_weight"] = "figure_token_embeds"
    for p in ("weight", "bias"):
        req[f"{_E}fc.{p}"] = f"image_proj.{p}"
        for i, name in ((1, "patch_norm_in"), (2, "patch_proj"), (3, "patch_norm_out")):
            req[f"{_E}vision_encoder.to_patch_embedding.{i}.{p}"] = f"vision_encoder.{name}.{p}"
    for src, dst in (
        ("row_embed", "pos_row"),
        ("col_embed", "pos_col"),
        ("dep_embed", "pos_depth"),
    ):
        req[f"{_E}vision_encoder.pos_embedding.{src}.weight"] = f"vision_encoder.{dst}.weight"
    for i in range(spec.depth):
        s, d = f"{_E}vision_encoder.transformer.layers.{i}.", f"vision_encoder.layers.{i}."
        req[s + "0.fn.to_qkv.weight"] = d + "qkv.weight"
        for p in ("weight", "bias"):
            req[f"{s}0.norm.{p}"] = f"{d}attn_norm.{p}"
            req[f"{s}0.fn.to_out.0.{p}"] = f"{d}attn_out.{p}"
            req[f"{s}1.norm.{p}"] = f"{d}mlp_norm.{p}"
            req[f"{s}1.fn.net.0.{p}"] = f"{d}fc1.{p}"
            req[f"{s}1.fn.net.3.{p}"] = f"{d}fc2.{p}"
    req.update(perceiver_key_map(_E + "perceiver.", "perceiver.", spec.perceiver_depth))
    return KeyPlan(
        required=req,
        aliases={_E + "weight": "lang_model.model.embed_tokens.weight"},
        dropped_prefixes=UNUSED_HEADS,
        dropped_suffixes=("rotary_emb.inv_freq",),
    )


def build_from_released(
    checkpoint: Mapping[str, torch.Tensor],
    llama_config: LlamaConfig,
    spec: RadFMVisionSpec | None = None,
    origin: str = "pytorch_model.bin",
) -> RadFMModel:
    """An empty model of the released shape, filled (assign, no copy) from the renamed tensors."""
    with init_empty_weights(include_buffers=False):
        model = RadFMModel(LlamaForCausalLM(llama_config), spec or RadFMVisionSpec())
    conversion = convert_state_dict(checkpoint, released_key_plan(model), origin)
    check_complete(model, conversion.state_dict, origin)
    # strict: shapes are checked too (a 7B base where 13B is expected fails here, by name)
    model.load_state_dict(conversion.state_dict, strict=True, assign=True)
    return model
