"""XrayGPT (MiniGPT-4 layout) -> transformers `Blip2ForConditionalGeneration` with a LLaMA LM.

MiniGPT-4 is BLIP-2's vision side (EVA ViT-g, 39 blocks, + `ln_vision`, a BERT Q-Former with
32 queries and cross-attention every 2nd layer, its text branch deleted) and one linear layer
(`llama_proj`) into Vicuna: exactly transformers' BLIP-2 with `language_projection` as the
projection and `use_qformer_text_input=False`. Key names learned from the MiniGPT-4 / XrayGPT
sources (models/mini_gpt4.py, blip2.py, eva_vit.py; the copy in Stanford-AIMI/CheXagent's
evaluation_chexbench/models/src/xraygpt).

The release is four pieces, merged in MiniGPT-4's own load order (a later piece wins):
  1. `eva_vit_g.pth`                  EVA ViT-g, unprefixed (`blocks.N.attn.qkv.weight`, ...)
  2. `blip2_pretrained_flant5xxl.pth` BLIP-2 stage-1 Q-Former (`Qformer.bert.*`, `query_tokens`,
                                      `ln_vision.*`, plus parts MiniGPT-4 deletes)
  3. `xraygpt_pretrained1.pth`        XrayGPT's trained weights (`llama_proj.*`)
  4. `Vicuna_Radiology_fp16/`         the radiology Vicuna, a Hugging Face LLaMA folder
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from harness.errors import WeightsMissing
from model_adapters.converters.common import (
    ConversionError,
    check_against_model,
    discard,
    meta_model,
    read_state_dict,
    rename,
    write_checkpoint,
)

DEFAULT_FILES = {
    "vit": "eva_vit_g.pth",
    "qformer": "blip2_pretrained_flant5xxl.pth",
    "checkpoint": "xraygpt_pretrained1.pth",
    "llama": "Vicuna_Radiology_fp16",
}
EVA_G_DEPTH = 39  # MiniGPT-4 builds EVA ViT-g with 39 of the checkpoint's 40 blocks
LN_VISION_EPS = 1e-5  # ln_vision is a default nn.LayerNorm; EVA's blocks use 1e-6

# Parts of the pieces that MiniGPT-4 itself has no module for (it deletes or never builds
# them), so loading them is a no-op in the original code; anything else unknown is an error.
EVA_DISCARD = [r"norm\.", r"head\.", r"fc_norm\.", r"lm_head\.", r"mask_token$"]
QFORMER_DISCARD = [
    r"Qformer\.cls\.",
    r"Qformer\.bert\.embeddings\.word_embeddings\.",
    r"Qformer\.bert\.embeddings\.position_embeddings\.",
    r"Qformer\.bert\.embeddings\.position_ids$",
    r"Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.",  # text branch (not *_query)
    r"vision_proj\.",
    r"text_proj\.",
    r"itm_head\.",
    r"temp$",
    r"t5_proj\.",
    r"opt_proj\.",
]
BUFFER_DISCARD = [r".*\.rotary_emb\.inv_freq$", r"Qformer\.bert\.embeddings\.position_ids$"]

_TO_BLIP2 = [
    (r"visual_encoder\.cls_token", r"vision_model.embeddings.class_embedding"),
    (r"visual_encoder\.pos_embed", r"vision_model.embeddings.position_embedding"),
    (
        r"visual_encoder\.patch_embed\.proj\.(weight|bias)",
        r"vision_model.embeddings.patch_embedding.\1",
    ),
    (
        r"visual_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)",
        r"vision_model.encoder.layers.\1.layer_norm\2.\3",
    ),
    (
        r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight",
        r"vision_model.encoder.layers.\1.self_attn.qkv.weight",
    ),
    (
        r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.fused_bias",
        r"vision_model.encoder.layers.\1.self_attn.qkv.bias",
    ),
    (
        r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)",
        r"vision_model.encoder.layers.\1.self_attn.projection.\2",
    ),
    (
        r"visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)",
        r"vision_model.encoder.layers.\1.mlp.\2.\3",
    ),
    (r"ln_vision\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"query_tokens", r"query_tokens"),
    (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", r"qformer.layernorm.\1"),
    (
        r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
        r"qformer.encoder.layer.\1.\2.attention.\3.\4",
    ),
    (
        r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
        r"qformer.encoder.layer.\1.\2.output.\3.\4",
    ),
    (
        r"Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate_query|output_query)\.(dense|LayerNorm)\.(weight|bias)",
        r"qformer.encoder.layer.\1.\2.\3.\4",
    ),
    (r"llama_proj\.(weight|bias)", r"language_projection.\1"),
    (r"llama_model\.(.+)", r"language_model.\1"),
]


def merge_pieces(
    vit: dict, qformer: dict, checkpoint: dict, llama: dict, vit_depth: int = EVA_G_DEPTH
) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """The four released pieces as one state dict in MiniGPT-4's own key layout."""
    vit, qformer, checkpoint, llama = dict(vit), dict(qformer), dict(checkpoint), dict(llama)
    dropped = {
        "vit": discard(vit, EVA_DISCARD),
        "qformer": discard(qformer, QFORMER_DISCARD),
        "llama": discard(llama, BUFFER_DISCARD),
    }
    extra_blocks = [
        k for k in vit if (m := re.match(r"blocks\.(\d+)\.", k)) and int(m[1]) >= vit_depth
    ]
    for k in extra_blocks:
        del vit[k]
    dropped["vit"] += extra_blocks
    merged = {f"visual_encoder.{k}": v for k, v in vit.items()}
    merged.update(qformer)
    merged.update(checkpoint)
    merged.update({f"llama_model.{k}": v for k, v in llama.items()})
    return merged, dropped


def fuse_qkv_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EVA keeps q_bias and v_bias (k has none); transformers keeps one qkv bias (q, 0, v)."""
    out = dict(state)
    blocks = sorted(
        {
            m[1]
            for k in state
            if (m := re.match(r"visual_encoder\.blocks\.(\d+)\.attn\.q_bias$", k))
        },
        key=int,
    )
    for b in blocks:
        q = out.pop(f"visual_encoder.blocks.{b}.attn.q_bias")
        v = out.pop(f"visual_encoder.blocks.{b}.attn.v_bias", None)
        if v is None:
            raise ConversionError(f"missing keys: visual_encoder.blocks.{b}.attn.v_bias")
        out[f"visual_encoder.blocks.{b}.attn.qkv.fused_bias"] = torch.cat(
            [q, torch.zeros_like(q), v]
        )
    stray = [k for k in out if k.endswith(".attn.v_bias")]
    if stray:
        raise ConversionError(f"v_bias without q_bias: {stray}")
    return out


def minigpt4_to_blip2(
    state: dict[str, torch.Tensor], source: str = "XrayGPT checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename a MiniGPT-4-layout state dict to `Blip2ForConditionalGeneration` keys."""
    return rename(fuse_qkv_bias(state), _TO_BLIP2, source)


def _count(state: dict, pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def build_config(
    state: dict[str, torch.Tensor],
    text_config: dict[str, Any],
    vit_heads: int | None = None,
    qformer_heads: int | None = None,
):
    """A Blip2Config read off the tensors' shapes (MiniGPT-4 layout) and the LLaMA config."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, LlamaConfig

    try:
        patch = state["visual_encoder.patch_embed.proj.weight"]
        pos = state["visual_encoder.pos_embed"]
        fc1 = state["visual_encoder.blocks.0.mlp.fc1.weight"]
        q_fc = state["Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"]
        queries = state["query_tokens"]
    except KeyError as exc:
        raise ConversionError(f"missing keys: {exc.args[0]}") from None
    v_hidden, p = patch.shape[0], patch.shape[-1]
    side = round((pos.shape[1] - 1) ** 0.5)
    vision = Blip2VisionConfig(
        hidden_size=v_hidden,
        intermediate_size=fc1.shape[0],
        num_hidden_layers=_count(state, r"visual_encoder\.blocks\.(\d+)\."),
        num_attention_heads=vit_heads or v_hidden // 88,  # EVA ViT-g: 1408 / 16 heads
        image_size=side * p,
        patch_size=p,
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )
    q_hidden = q_fc.shape[1]
    qformer = Blip2QFormerConfig(
        hidden_size=q_hidden,
        intermediate_size=q_fc.shape[0],
        num_hidden_layers=_count(state, r"Qformer\.bert\.encoder\.layer\.(\d+)\."),
        num_attention_heads=qformer_heads or q_hidden // 64,  # BERT-base: 768 / 12 heads
        encoder_hidden_size=v_hidden,
        cross_attention_frequency=2,
        use_qformer_text_input=False,
    )
    text = LlamaConfig(
        **{
            k: v
            for k, v in text_config.items()
            if k not in ("architectures", "transformers_version", "_name_or_path")
        }
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=queries.shape[1],
    )
    config.chexbench_arch = "xraygpt"
    config.xraygpt_ln_vision_eps = LN_VISION_EPS
    return config


def build_image_processor(image_size: int):
    """Blip2ImageEvalProcessor: bicubic resize to a square, CLIP mean/std, no crop."""
    from transformers import BlipImageProcessor

    return BlipImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=3,
        do_resize=True,
        do_normalize=True,
        do_convert_rgb=True,
    )


def convert_xraygpt(
    src: str | Path,
    dst: str | Path,
    vit: str | None = None,
    qformer: str | None = None,
    checkpoint: str | None = None,
    llama: str | None = None,
    vit_heads: int | None = None,
    qformer_heads: int | None = None,
    vit_depth: int = EVA_G_DEPTH,
) -> dict[str, Any]:
    """Read the released pieces under `src` (or the given paths), write a BLIP-2 folder."""
    import json

    from transformers import AutoTokenizer, Blip2ForConditionalGeneration

    src = Path(src)
    paths = {
        "vit": Path(vit) if vit else src / DEFAULT_FILES["vit"],
        "qformer": Path(qformer) if qformer else src / DEFAULT_FILES["qformer"],
        "checkpoint": Path(checkpoint) if checkpoint else src / DEFAULT_FILES["checkpoint"],
        "llama": Path(llama) if llama else src / DEFAULT_FILES["llama"],
    }
    absent = [f"{k}: {p}" for k, p in paths.items() if not p.exists()]
    if absent:
        raise WeightsMissing(
            "xraygpt convert: missing release pieces (" + "; ".join(absent) + "). Download "
            "eva_vit_g.pth and blip2_pretrained_flant5xxl.pth (LAVIS, links in the MiniGPT-4 / "
            "XrayGPT README), xraygpt_pretrained1.pth and the Vicuna_Radiology_fp16 folder "
            "(mbzuai-oryx/XrayGPT README) into one folder and pass it as SRC."
        )
    pieces = {k: read_state_dict(p) for k, p in paths.items()}
    merged, dropped = merge_pieces(
        pieces["vit"], pieces["qformer"], pieces["checkpoint"], pieces["llama"], vit_depth
    )
    text_config = json.loads((paths["llama"] / "config.json").read_text())
    config = build_config(merged, text_config, vit_heads, qformer_heads)
    state = minigpt4_to_blip2(merged, source=str(src))
    check_against_model(state, meta_model(Blip2ForConditionalGeneration, config), str(src))
    tokenizer = AutoTokenizer.from_pretrained(paths["llama"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # as MiniGPT-4 does
    manifest = {
        "format": "xraygpt",
        "converter": "chexbench convert xraygpt",
        "sources": {k: str(p) for k, p in paths.items()},
        "discarded": {k: sorted(v) for k, v in dropped.items()},
        "n_tensors": len(state),
    }
    write_checkpoint(
        state,
        config,
        dst,
        manifest,
        [tokenizer, build_image_processor(config.vision_config.image_size)],
    )
    return manifest
