"""Released LLaVA-Med checkpoints -> transformers `LlavaForConditionalGeneration`.

Source layout (microsoft/LLaVA-Med and haotian-liu/LLaVA, `LlavaMistralForCausalLM` /
`LlavaLlamaForCausalLM`): the LM as `model.embed_tokens`, `model.layers.N.*`, `model.norm`,
`lm_head`; the projector as `model.mm_projector.0/2.*` (v1.5, `mlp2x_gelu`) or
`model.mm_projector.*` (v0, one linear layer); the CLIP tower as
`model.vision_tower.vision_tower.vision_model.*` when the checkpoint carries it. Older
checkpoints (v0) keep the tower out of the file and load `openai/clip-vit-large-patch14` at
run time: pass that folder as `vision_tower`.

Config: `mm_vision_select_layer` (-2) -> `vision_feature_layer`; `mm_vision_select_feature`
"patch" -> "default" (drop CLS); `image_aspect_ratio` "pad" -> pad to a square with the mean
colour before the CLIP resize/crop (LlavaImageProcessor do_pad). A v0 single linear projector
becomes `linear_1` with an identity `linear_2` and a linear activation (exact).

Two releases, two variants that must never be mixed up (results of one are not the other's):
- v0, the paper's LLaVA-Med and the one the official CheXbench wrapper loads
  (`LlavaLlamaForCausalLM`): LLaMA-7B plus delta weights. Download the delta
  `llava_med_in_text_60k_ckpt2_delta.zip` (microsoft/LLaVA-Med README, "Model Download", at
  commit b9a98a7, before v1.5), unzip it, and with LLaMA-7B in Hugging Face format run, from a
  checkout of that commit, `python3 -m llava.model.apply_delta --base-model-path LLAMA7B
  --target-model-path SRC --delta-path DELTA` (the README's `--base/--target/--delta` are not
  the script's argument names). The tower is not in SRC: pass openai/clip-vit-large-patch14.
- v1.5 (`microsoft/llava-med-v1.5-mistral-7b`, `LlavaMistralForCausalLM`), tower included.
The variant read off the source config is written to the converted config
(`chexbench_llava_med_variant`); each adapter refuses the other's folder.
"""

from __future__ import annotations

import json
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

BUFFER_DISCARD = [r".*\.rotary_emb\.inv_freq$", r".*vision_model\.embeddings\.position_ids$"]
CLIP_HEAD_DIM = 64  # OpenAI CLIP ViT-B/L towers

_RULES = [
    (r"model\.(embed_tokens|norm)\.weight", r"model.language_model.\1.weight"),
    (r"model\.layers\.(.+)", r"model.language_model.layers.\1"),
    (r"lm_head\.weight", r"lm_head.weight"),
    (r"model\.mm_projector\.0\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
    (r"model\.mm_projector\.2\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1"),
    (r"model\.mm_projector\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
    (r"model\.vision_tower\.vision_tower\.(vision_model\..+)", r"model.vision_tower.\1"),
]
V0, V15 = "v0", "v1.5"
# What each variant's adapter is called (model_adapters/llava_med.py).
ADAPTER_FOR = {V0: "llava_med", V15: "llava_med_v15"}
V0_IMAGE_TOKENS = ("<im_patch>", "<im_start>", "<im_end>")  # LLaVA v0 llava/model/llava.py:372-377
_TEXT_DROP = (
    "architectures",
    "transformers_version",
    "_name_or_path",
    "model_type",
    "auto_map",
    "torch_dtype",
)


def _text_config(cfg: dict[str, Any]):
    from transformers import LlamaConfig, MistralConfig

    kind = str(cfg.get("model_type", ""))
    cls = MistralConfig if "mistral" in kind else LlamaConfig
    known = set(cls().to_dict())
    return cls(**{k: v for k, v in cfg.items() if k in known and k not in _TEXT_DROP})


def _vision_config_from_state(state: dict[str, torch.Tensor]):
    """CLIP vision config read off the tower's tensors (head dim 64, as OpenAI CLIP)."""
    from transformers import CLIPVisionConfig

    pre = "model.vision_tower.vision_tower.vision_model."
    patch = state[pre + "embeddings.patch_embedding.weight"]
    n_pos = state[pre + "embeddings.position_embedding.weight"].shape[0]
    hidden, p = patch.shape[0], patch.shape[-1]
    layers = len({k.split(".")[6] for k in state if k.startswith(pre + "encoder.layers.")})
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=state[pre + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM),
        image_size=round((n_pos - 1) ** 0.5) * p,
        patch_size=p,
        hidden_act="quick_gelu",
    )


def llava_med_state_to_hf(
    state: dict[str, torch.Tensor], source: str = "LLaVA-Med checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename a LLaVA-Med state dict to LlavaForConditionalGeneration keys (strict)."""
    state = dict(state)
    discard(state, BUFFER_DISCARD)
    out = rename(state, _RULES, source)
    if (
        "model.multi_modal_projector.linear_1.weight" in out
        and "model.multi_modal_projector.linear_2.weight" not in out
    ):
        # v0: one linear layer. Represent it exactly as linear_1 -> identity -> identity.
        d = out["model.multi_modal_projector.linear_1.weight"].shape[0]
        like = out["model.multi_modal_projector.linear_1.weight"]
        out["model.multi_modal_projector.linear_2.weight"] = torch.eye(d, dtype=like.dtype)
        out["model.multi_modal_projector.linear_2.bias"] = torch.zeros(d, dtype=like.dtype)
    return out


def detect_variant(src_cfg: dict[str, Any], where: str) -> str:
    """v0 (LlavaLlamaForCausalLM, model_type "llava") or v1.5 (LlavaMistralForCausalLM)."""
    kind = str(src_cfg.get("model_type", ""))
    archs = [str(a) for a in src_cfg.get("architectures") or []]
    if kind == "llava_mistral" or "LlavaMistralForCausalLM" in archs:
        return V15
    if kind == "llava" and archs in ([], ["LlavaLlamaForCausalLM"]):
        return V0
    raise ConversionError(
        f"{where}: not a LLaVA-Med release this converter knows (model_type {kind!r}, "
        f"architectures {archs}); expected v0 (LlavaLlamaForCausalLM after apply_delta) or "
        "v1.5 (microsoft/llava-med-v1.5-mistral-7b)"
    )


def build_config(
    src_cfg: dict[str, Any], state: dict[str, torch.Tensor], vision_config=None, variant: str = V15
):
    from transformers import LlavaConfig

    text = _text_config(src_cfg)
    projector = src_cfg.get(
        "mm_projector_type", "linear" if "model.mm_projector.weight" in state else "mlp2x_gelu"
    )
    if projector not in ("linear", "mlp2x_gelu"):
        raise ConversionError(
            f"unsupported mm_projector_type {projector!r} (known: linear, mlp2x_gelu)"
        )
    feature = src_cfg.get("mm_vision_select_feature", "patch")
    config = LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text.to_dict(),
        image_token_index=text.vocab_size,  # no real token: images are spliced by the harness
        projector_hidden_act="gelu" if projector == "mlp2x_gelu" else "linear",
        vision_feature_layer=int(src_cfg.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if feature == "patch" else "full",
        multimodal_projector_bias=True,
    )
    config.chexbench_arch = "llava_med"
    config.chexbench_llava_med_variant = variant
    config.chexbench_mm_use_im_start_end = bool(src_cfg.get("mm_use_im_start_end", False))
    config.chexbench_image_aspect_ratio = src_cfg.get("image_aspect_ratio", "square")
    config.chexbench_mm_projector_type = projector
    return config


def build_image_processor(image_size: int, pad: bool):
    from transformers import LlavaImageProcessor

    return LlavaImageProcessor(
        do_pad=pad,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )


def convert_llava_med(
    src: str | Path, dst: str | Path, vision_tower: str | Path | None = None
) -> dict[str, Any]:
    """Convert the LLaVA-Med folder `src` into a transformers Llava folder at `dst`."""
    from transformers import AutoTokenizer, CLIPVisionConfig, LlavaForConditionalGeneration

    src = Path(src)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise WeightsMissing(
            f"llava-med convert: {cfg_path} not found. SRC is either LLaVA-Med v0 (the paper's: "
            "the folder llava.model.apply_delta writes from LLaMA-7B and the delta "
            "llava_med_in_text_60k_ckpt2_delta, see docs/adapters/llava_med.md) or v1.5 "
            "(`huggingface-cli download microsoft/llava-med-v1.5-mistral-7b --local-dir SRC`)."
        )
    src_cfg = json.loads(cfg_path.read_text())
    variant = detect_variant(src_cfg, str(cfg_path))
    state = read_state_dict(src)
    has_tower = any(k.startswith("model.vision_tower.") for k in state)
    if has_tower and vision_tower:
        raise ConversionError(f"{src} already contains the vision tower; drop --vision-tower")
    if has_tower:
        vcfg = _vision_config_from_state(state)
    elif vision_tower:
        # A CLIPVisionModel or a whole CLIPModel folder: LLaVA uses only the vision half.
        tower = {
            k[len("vision_model.") :]: v
            for k, v in read_state_dict(vision_tower).items()
            if k.startswith("vision_model.")
        }
        if not tower:
            raise ConversionError(f"{vision_tower}: no vision_model.* weights (not a CLIP folder)")
        state.update(
            {f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in tower.items()}
        )
        vcfg = CLIPVisionConfig.from_pretrained(vision_tower)
    else:
        raise ConversionError(
            f"{src}: the checkpoint has no vision tower weights (model.vision_tower.*). Download "
            f"the CLIP tower it names ({src_cfg.get('mm_vision_tower', 'openai/clip-vit-large-patch14')}) "
            "and pass its folder as --vision-tower"
        )
    config = build_config(src_cfg, state, vcfg, variant)
    hf_state = llava_med_state_to_hf(state, source=str(src))
    check_against_model(hf_state, meta_model(LlavaForConditionalGeneration, config), str(src))
    tokenizer = AutoTokenizer.from_pretrained(src)
    if variant == V0:
        _check_v0_tokens(tokenizer, config, str(src))
    manifest = {
        "format": "llava_med",
        "converter": "chexbench convert llava-med",
        "variant": variant,
        "adapter": ADAPTER_FOR[variant],
        "source": str(src),
        "vision_tower": str(vision_tower) if vision_tower else None,
        "projector": config.chexbench_mm_projector_type,
        "n_tensors": len(hf_state),
    }
    processor = build_image_processor(vcfg.image_size, config.chexbench_image_aspect_ratio == "pad")
    write_checkpoint(hf_state, config, dst, manifest, [tokenizer, processor])
    return manifest


def _check_v0_tokens(tokenizer: Any, config: Any, where: str) -> None:
    """v0 was trained with `<im_patch>` (and `<im_start>`/`<im_end>`) rows in its embedding;
    its tokenizer must carry them, or the official prompt cannot be written."""
    needed = V0_IMAGE_TOKENS if config.chexbench_mm_use_im_start_end else V0_IMAGE_TOKENS[:1]
    vocab = tokenizer.get_vocab()
    rows = config.text_config.vocab_size
    bad = [t for t in needed if t not in vocab or vocab[t] >= rows]
    if bad:
        raise ConversionError(
            f"{where}: the tokenizer lacks {bad} within the model's {rows} embedding rows; "
            "a LLaVA-Med v0 folder made by llava.model.apply_delta carries them (it saves the "
            "delta's tokenizer)"
        )
