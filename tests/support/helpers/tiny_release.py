"""Tiny random-weight models of the baselines' architectures, written to disk in the layouts
the real releases use (transformers folders for BLIP-2/InstructBLIP; the original LLaVA-Med and
MiniGPT-4/XrayGPT layouts for the converters). Tests, the conformance check and the benchmark
load them through the same code paths as the real weights. Seeded: same seed, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers.tiny_tokenizers import llama_tokenizer, opt_tokenizer, phi_tokenizer

VISION = {"hidden": 32, "layers": 2, "heads": 2, "inter": 64, "image": 32, "patch": 8}
QFORMER = {"hidden": 32, "layers": 2, "heads": 2, "inter": 64, "queries": 4}
TEXT = {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "inter": 64}


def _tokenizer():
    from chexagent.tokenizer import load_tokenizer

    return load_tokenizer()


def _vision_config():
    from transformers import Blip2VisionConfig

    return Blip2VisionConfig(
        hidden_size=VISION["hidden"],
        intermediate_size=VISION["inter"],
        num_hidden_layers=VISION["layers"],
        num_attention_heads=VISION["heads"],
        image_size=VISION["image"],
        patch_size=VISION["patch"],
    )


def _qformer_config(vocab: int, text_input: bool):
    from transformers import Blip2QFormerConfig

    return Blip2QFormerConfig(
        hidden_size=QFORMER["hidden"],
        num_hidden_layers=QFORMER["layers"],
        num_attention_heads=QFORMER["heads"],
        intermediate_size=QFORMER["inter"],
        encoder_hidden_size=VISION["hidden"],
        vocab_size=vocab,
        use_qformer_text_input=text_input,
    )


def _llama_config(tok, cls_name: str = "LlamaConfig"):
    import transformers

    cls = getattr(transformers, cls_name)
    return cls(
        vocab_size=len(tok),
        hidden_size=TEXT["hidden"],
        intermediate_size=TEXT["inter"],
        num_hidden_layers=TEXT["layers"],
        num_attention_heads=TEXT["heads"],
        num_key_value_heads=TEXT["kv_heads"],
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _blip_processor(size: int = VISION["image"]):
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": size, "width": size}, resample=3)


def _randomise(model: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Weights large enough that every part visibly moves the logits (default init is ~0.02);
    norm scales stay near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            is_scale = p.ndim == 1 and "norm" in name.lower() and name.endswith("weight")
            p.copy_(_rand(g, *p.shape, std=0.1 if is_scale else std, base=1.0 if is_scale else 0.0))


def write_tiny_blip2(out: str | Path, seed: int = 0) -> Path:
    """Blip2ForConditionalGeneration with a 2-layer OPT decoder (blip2-opt's architecture)."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, OPTConfig

    tok = opt_tokenizer(special=["<image>"])  # OPT's: </s> (id 2) is BOS; <image> as on the hub
    text = OPTConfig(
        vocab_size=len(tok),
        hidden_size=TEXT["hidden"],
        ffn_dim=TEXT["inter"],
        num_hidden_layers=TEXT["layers"],
        num_attention_heads=TEXT["heads"],
        word_embed_proj_dim=TEXT["hidden"],
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = Blip2Config(
        vision_config=_vision_config().to_dict(),
        qformer_config=_qformer_config(len(tok), False).to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=QFORMER["queries"],
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    _randomise(model, seed)
    return _save(out, model, tok, _blip_processor())


def write_tiny_instructblip(out: str | Path, seed: int = 0) -> Path:
    """InstructBlipForConditionalGeneration with a 2-layer LLaMA (Vicuna's architecture)."""
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
    )

    # Vicuna's tokenizer as Salesforce/instructblip-vicuna-7b ships it: BOS is `</s>` (id 2).
    tok = llama_tokenizer(bos_token="</s>", pad_token="[PAD]", special=["<image>"])
    vision = InstructBlipVisionConfig(**_vision_config().to_dict())
    qformer = InstructBlipQFormerConfig(
        hidden_size=QFORMER["hidden"],
        num_hidden_layers=QFORMER["layers"],
        num_attention_heads=QFORMER["heads"],
        intermediate_size=QFORMER["inter"],
        encoder_hidden_size=VISION["hidden"],
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
    )
    config = InstructBlipConfig(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=_llama_config(tok).to_dict(),
        num_query_tokens=QFORMER["queries"],
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(config).eval()
    _randomise(model, seed)
    path = _save(out, model, tok, _blip_processor())
    _tokenizer().save_pretrained(path / "qformer_tokenizer")  # (BERT's, in the release)
    return path


def _save(out, model, tok, processor) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# ----- original-layout releases for the converters -------------------------------------------
def _rand(g: torch.Generator, *shape: int, std: float = 0.2, base: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=g) * std + base


def _ln(g, prefix: str, d: int) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": _rand(g, d, std=0.1, base=1.0),
        f"{prefix}.bias": _rand(g, d, std=0.1),
    }


def _lin(g, prefix: str, out_d: int, in_d: int, bias: bool = True) -> dict[str, torch.Tensor]:
    d = {f"{prefix}.weight": _rand(g, out_d, in_d)}
    if bias:
        d[f"{prefix}.bias"] = _rand(g, out_d, std=0.1)
    return d


def eva_vit_state(seed: int = 0, depth: int = VISION["layers"] + 1) -> dict[str, torch.Tensor]:
    """EVA ViT-g keys as in eva_vit_g.pth (one block more than MiniGPT-4 builds, a final norm)."""
    g = torch.Generator().manual_seed(seed)
    d, p, n = VISION["hidden"], VISION["patch"], (VISION["image"] // VISION["patch"]) ** 2
    sd = {
        "cls_token": _rand(g, 1, 1, d),
        "pos_embed": _rand(g, 1, n + 1, d),
        "patch_embed.proj.weight": _rand(g, d, 3, p, p, std=0.05),
        "patch_embed.proj.bias": _rand(g, d, std=0.1),
        **_ln(g, "norm", d),
    }
    for b in range(depth):
        sd |= _ln(g, f"blocks.{b}.norm1", d) | _ln(g, f"blocks.{b}.norm2", d)
        sd |= _lin(g, f"blocks.{b}.attn.qkv", 3 * d, d, bias=False)
        sd |= {
            f"blocks.{b}.attn.q_bias": _rand(g, d, std=0.1),
            f"blocks.{b}.attn.v_bias": _rand(g, d, std=0.1),
        }
        sd |= _lin(g, f"blocks.{b}.attn.proj", d, d)
        sd |= _lin(g, f"blocks.{b}.mlp.fc1", VISION["inter"], d)
        sd |= _lin(g, f"blocks.{b}.mlp.fc2", d, VISION["inter"])
    return sd


def blip2_qformer_state(seed: int = 1, vocab: int = 100) -> dict[str, torch.Tensor]:
    """BLIP-2 stage-1 checkpoint keys (blip2_pretrained_flant5xxl.pth), text branch included."""
    g = torch.Generator().manual_seed(seed)
    h, dv, i = QFORMER["hidden"], VISION["hidden"], QFORMER["inter"]
    sd = {
        "query_tokens": _rand(g, 1, QFORMER["queries"], h),
        **_ln(g, "ln_vision", dv),
        **_ln(g, "Qformer.bert.embeddings.LayerNorm", h),
        "Qformer.bert.embeddings.word_embeddings.weight": _rand(g, vocab, h),
        "Qformer.bert.embeddings.position_embeddings.weight": _rand(g, 64, h),
        "Qformer.bert.embeddings.position_ids": torch.arange(64)[None],
        "Qformer.cls.predictions.bias": _rand(g, vocab),
        "temp": torch.tensor(0.07),
        **_lin(g, "vision_proj", 16, h),
        **_lin(g, "text_proj", 16, h),
        **_lin(g, "itm_head", 2, h),
    }
    for n in range(QFORMER["layers"]):
        pre = f"Qformer.bert.encoder.layer.{n}"
        kinds = ["attention"] + (["crossattention"] if n % 2 == 0 else [])
        for kind in kinds:
            kv_in = dv if kind == "crossattention" else h
            sd |= _lin(g, f"{pre}.{kind}.self.query", h, h)
            sd |= _lin(g, f"{pre}.{kind}.self.key", h, kv_in)
            sd |= _lin(g, f"{pre}.{kind}.self.value", h, kv_in)
            sd |= _lin(g, f"{pre}.{kind}.output.dense", h, h) | _ln(
                g, f"{pre}.{kind}.output.LayerNorm", h
            )
        for branch in ("", "_query"):
            sd |= _lin(g, f"{pre}.intermediate{branch}.dense", i, h)
            sd |= _lin(g, f"{pre}.output{branch}.dense", h, i) | _ln(
                g, f"{pre}.output{branch}.LayerNorm", h
            )
    return sd


def write_tiny_xraygpt_release(out: str | Path, seed: int = 0) -> Path:
    """The four XrayGPT release pieces, tiny, under their released file names."""
    from transformers import LlamaForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = llama_tokenizer()  # Vicuna's (LLaMA) tokenizer
    torch.save(eva_vit_state(seed), out / "eva_vit_g.pth")
    torch.save({"model": blip2_qformer_state(seed + 1)}, out / "blip2_pretrained_flant5xxl.pth")
    g = torch.Generator().manual_seed(seed + 2)
    torch.save(
        {"model": _lin(g, "llama_proj", TEXT["hidden"], QFORMER["hidden"])},
        out / "xraygpt_pretrained1.pth",
    )
    torch.manual_seed(seed)
    llama = LlamaForCausalLM(_llama_config(tok)).eval()
    _randomise(llama, seed + 3)
    llama.save_pretrained(out / "Vicuna_Radiology_fp16", safe_serialization=True)
    tok.save_pretrained(out / "Vicuna_Radiology_fp16")
    return out


def write_tiny_llava_med_release(out: str | Path, seed: int = 0, v0: bool = False) -> Path:
    """A LLaVA-Med checkpoint folder in the LLaVA repository's layout (v1.5 Mistral, or v0).

    v1.5 carries the CLIP tower (`model.vision_tower.vision_tower.*`) and an mlp2x_gelu
    projector; v0 is LLaMA with one linear projector and the tower saved separately under
    `clip/` (pass it as vision_tower).
    """
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM, MistralForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # v0's tokenizer carries what LLaVA's training added ([PAD], then the image tokens,
    # llava/train/train.py:513-516 and llava/model/llava.py:372-377 at LLaVA-Med b9a98a7).
    tok = (
        llama_tokenizer(pad_token="[PAD]", added=("<im_patch>", "<im_start>", "<im_end>"))
        if v0
        else llama_tokenizer()
    )
    text_cfg = _llama_config(tok, "LlamaConfig" if v0 else "MistralConfig")
    torch.manual_seed(seed)
    lm = (LlamaForCausalLM if v0 else MistralForCausalLM)(text_cfg).eval()
    _randomise(lm, seed)
    vcfg = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=1,
        image_size=VISION["image"],
        patch_size=VISION["patch"],
        hidden_act="quick_gelu",
    )
    tower = CLIPVisionModel(vcfg).eval()
    _randomise(tower, seed + 1, std=0.1)
    g = torch.Generator().manual_seed(seed + 2)
    state = dict(lm.state_dict())
    if v0:
        state |= _lin(g, "model.mm_projector", TEXT["hidden"], 64)
        tower.save_pretrained(out / "clip", safe_serialization=True)
    else:
        state |= _lin(g, "model.mm_projector.0", TEXT["hidden"], 64)
        state |= _lin(g, "model.mm_projector.2", TEXT["hidden"], TEXT["hidden"])
        state |= {f"model.vision_tower.vision_tower.{k}": v for k, v in tower.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    # v0 (LlavaLlamaForCausalLM after LLaVA-Med's apply_delta) knows only the fields its
    # llava/model/llava.py sets; v1.5 names its projector, feature and aspect-ratio handling.
    common = {"mm_hidden_size": 64, "mm_vision_select_layer": -2, "use_mm_proj": True}
    cfg = (
        text_cfg.to_dict()
        | common
        | (
            {
                "model_type": "llava",
                "architectures": ["LlavaLlamaForCausalLM"],
                "mm_vision_tower": "openai/clip-vit-large-patch14",
                "mm_use_im_start_end": True,
            }
            if v0
            else {
                "model_type": "llava_mistral",
                "architectures": ["LlavaMistralForCausalLM"],
                "mm_vision_tower": "openai/clip-vit-large-patch14-336",
                "mm_use_im_start_end": False,
                "mm_vision_select_feature": "patch",
                "mm_projector_type": "mlp2x_gelu",
                "image_aspect_ratio": "pad",
            }
        )
    )
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(out)
    return out


# ----- CheXagent-2 stand-in ----------------------------------------------------------------------
_CHEXAGENT2_CODE = '''"""Tiny stand-in for CheXagent-2's hub code (Qwen-VL layout: transformer.visual)."""
import numpy as np
import torch
from torch import nn
from transformers import PhiConfig, PhiForCausalLM


class TinyCheXagent2Config(PhiConfig):
    model_type = "tiny_chexagent2"

    def __init__(self, image_size=32, patch_size=8, **kwargs):
        self.image_size = image_size
        self.patch_size = patch_size
        super().__init__(**kwargs)


class TinyVisual(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.size = config.image_size
        self.proj = nn.Conv2d(3, config.hidden_size, config.patch_size, config.patch_size)
        self.norm = nn.LayerNorm(config.hidden_size)

    def image_transform(self, image):
        a = np.asarray(image.resize((self.size, self.size), 3), dtype=np.float32) / 255.0
        return (torch.from_numpy(a).permute(2, 0, 1) - 0.5) / 0.5

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class TinyCheXagent2ForCausalLM(PhiForCausalLM):
    config_class = TinyCheXagent2Config

    def __init__(self, config):
        super().__init__(config)
        self.transformer = nn.Module()
        self.transformer.visual = TinyVisual(config)
        self.post_init()
'''

# CheXagent-2's chat template as its tokenizer sets it (DEFAULT_CHAT_TEMPLATE of
# tokenization_chexagent.py; third-party copy in GitHub 4-thkind/VERA @ 57d96e5).
CHEXAGENT2_CHAT_TEMPLATE = (
    "{% for message in messages %}\n{% if message['from'] == 'human' %}\n"
    "{{ '<|user|>\n' + message['value'] + eos_token }}\n{% elif message['from'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['value'] + eos_token }}\n{% elif message['from'] == 'gpt' %}\n"
    "{{ '<|assistant|>\n'  + message['value'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)
CHEXAGENT2_IMAGE_TAGS = ("<|img|>", "<|/img|>", "<|imgpad|>")


def write_tiny_chexagent2_standin(out: str | Path, seed: int = 0) -> Path:
    """A folder that loads only with trust_remote_code: its model class is code in the folder.

    Structure follows what is documented of CheXagent-2 (a Phi-2-style decoder, RadPhi-2; a
    Qwen-VL-style vision module at `transformer.visual` with `image_transform`; a chat
    template with "from"/"value" turns). It is a stand-in, not CheXagent-2's real code.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "modeling_tiny_chexagent2.py").write_text(_CHEXAGENT2_CODE)
    tok = phi_tokenizer(special=CHEXAGENT2_IMAGE_TAGS)  # CodeGen/Phi BPE, no BOS added
    tok.chat_template = CHEXAGENT2_CHAT_TEMPLATE
    cfg = {
        "model_type": "tiny_chexagent2",
        "vocab_size": len(tok),
        "hidden_size": TEXT["hidden"],
        "intermediate_size": TEXT["inter"],
        "num_hidden_layers": TEXT["layers"],
        "num_attention_heads": TEXT["heads"],
        "max_position_embeddings": 512,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "image_size": VISION["image"],
        "patch_size": VISION["patch"],
        "auto_map": {
            "AutoConfig": "modeling_tiny_chexagent2.TinyCheXagent2Config",
            "AutoModelForCausalLM": "modeling_tiny_chexagent2.TinyCheXagent2ForCausalLM",
        },
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    # The modeling file is the one this function just wrote into `out`, not downloaded code.
    ours = bool(out.joinpath("modeling_tiny_chexagent2.py").is_file())
    config = AutoConfig.from_pretrained(out, trust_remote_code=ours)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=ours).eval()
    _randomise(model, seed)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
