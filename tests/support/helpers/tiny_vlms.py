"""Tiny random image-text-to-text models of real transformers architectures, written to disk
with a complete processor and a chat template shaped like the released one, so `--model hf`
loads them exactly as it loads a hub checkpoint (`AutoProcessor` + `AutoModelForImageTextToText`).

Offline facts these builders rely on (transformers 4.57, no torchvision here): the processors of
qwen2_vl, qwen2_5_vl and llava_onevision also hold a video processor, which cannot be built
without torchvision, so those three folders are written from an image-only subclass of the real
processor class, with the real class name in `processor_config.json` (what the hub has); the
models are the real classes. Mllama's cross-attention gates start at zero (the model would
ignore the image), so they are set non-zero. Chat templates are not in the transformers package:
each one below mirrors the structure of the released template (cited per architecture).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# Architectures `--model hf` is tested on; the last three need the image-only processor.
ARCHITECTURES = (
    "llava",
    "llava_next",
    "idefics3",
    "gemma3",
    "mllama",
    "mistral3",
    "qwen2_vl",
    "qwen2_5_vl",
    "llava_onevision",
)
NEED_IMAGE_ONLY_PROCESSOR = ("qwen2_vl", "qwen2_5_vl", "llava_onevision")

TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


def image(seed: int, size: tuple[int, int] = (52, 40)) -> Image.Image:
    """A random RGB image (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _tokenizer(extra: tuple[str, ...] = ()) -> Any:
    """The project's byte-level BPE with the architecture's special tokens added; it returns no
    token_type_ids (generate() would refuse them) and prepends <s> like LLaMA's tokenizer."""
    from chexagent.tokenizer import build_tokenizer

    tok = build_tokenizer()
    tok.model_input_names = ["input_ids", "attention_mask"]
    if extra:
        tok.add_special_tokens(
            {"additional_special_tokens": list(extra)}, replace_additional_special_tokens=False
        )
    return tok


def byte_tokenizer() -> Any:
    """A byte-level BPE with no merges (GPT-2's byte alphabet, one token per byte) that adds
    <s> like LLaMA's: every option spans several tokens and all of them start with the same
    bare-space token "Ġ", the case where rigging an option's first token proves nothing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate([*specials, *alphabet])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.add_special_tokens(specials)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<image>"],
        model_input_names=["input_ids", "attention_mask"],
    )
    out.image_token = "<image>"
    return out


def merging_tokenizer() -> Any:
    """A LLaMA-style tokenizer ("▁" for spaces, BOS added) with one extra merge ranked first,
    ":" + "▁": after "ASSISTANT:" an option " AP" starts with the token ":▁", so the prompt's
    last token and the option's first merge (SentencePiece models do this)."""
    import json

    from tokenizers import Tokenizer

    from helpers.tiny_tokenizers import llama_tokenizer

    tok = llama_tokenizer()
    data = json.loads(tok.backend_tokenizer.to_str())
    taken = [*data["model"]["vocab"].values(), *(t["id"] for t in data["added_tokens"])]
    data["model"]["vocab"][":▁"] = max(taken) + 1
    data["model"]["merges"].insert(0, [":", "▁"])
    tok._tokenizer = Tokenizer.from_str(json.dumps(data))
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.image_token = "<image>"
    return tok


def _without_bos(tok: Any) -> Any:
    """ChatML tokenizers (Qwen) add no special tokens: drop the <s> post-processor."""
    from tokenizers import processors

    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _text(tok: Any, **kw: Any) -> dict[str, Any]:
    return {**TEXT, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, **kw}


def _clip(image_size: int = 28, patch: int = 14) -> dict[str, Any]:
    return {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": image_size,
        "patch_size": patch,
        "projection_dim": 32,
    }


def _image_only(cls: type) -> type:
    """The processor class without its video processor (image path unchanged)."""
    return type(cls.__name__, (cls,), {"attributes": ["image_processor", "tokenizer"]})


# ----- chat templates, shaped like the released ones -------------------------------------------
# llava-hf/llava-1.5-7b-hf chat_template.json: "USER: <image>\n{text} ASSISTANT:", no BOS (the
# tokenizer adds it).
LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role']=='user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% for c in m['content'] %}{% if c['type']=='image' %}<image>\n"
    "{% elif c['type']=='text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% if m['role']=='user' %} {% else %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
# llava-hf/llava-v1.6-mistral-7b-hf: "[INST] <image>\n{text} [/INST]", images first.
LLAVA_NEXT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
    "{% for c in m['content'] | selectattr('type', 'equalto', 'image') %}<image>\n{% endfor %}"
    "{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] }}"
    "{% endfor %} [/INST]{% else %} {{ m['content'][0]['text'] }}{{ eos_token }} {% endif %}"
    "{% endfor %}"
)
# llava-hf/llava-onevision-qwen2-7b-ov-hf: ChatML, all images first, then "\n" + text.
ONEVISION_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' ' }}"
    "{% for c in m['content'] | selectattr('type', 'equalto', 'image') %}<image>{% endfor %}"
    "{% for c in m['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + c['text'] }}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen/Qwen2-VL-7B-Instruct and Qwen2.5-VL: default system turn, ChatML, items in list order.
QWEN_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# HuggingFaceTB/SmolVLM-Instruct (idefics3): "<|im_start|>User:<image>{text}<end_of_utterance>".
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}"
    "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# google/gemma-3-4b-it (MedGemma): BOS in the template, items in list order, "model" turn.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"
    "{% set role = 'model' %}{% else %}{% set role = m['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<start_of_image>' }}{% elif c['type'] == 'text' %}"
    "{{ c['text'] | trim }}{% endif %}{% endfor %}{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# meta-llama/Llama-3.2-11B-Vision-Instruct (mllama): BOS, header ids, <|image|> in place.
MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] | trim }}{% endif %}{% endfor %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
# mistralai/Mistral-Small-3.1-24B-Instruct (mistral3, Pixtral processor): "<s>[INST][IMG]{text}[/INST]".
MISTRAL3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST]"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}[IMG]{% elif c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}[/INST]{% else %}{{ m['content'][0]['text'] }}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)


# ----- builders: (processor, model) ------------------------------------------------------------
def _llava(tokenizer: str = "bpe") -> tuple[Any, Any]:
    import transformers as T

    tok = {"bpe": _tokenizer, "bytes": byte_tokenizer, "merging": merging_tokenizer}[tokenizer]()
    tok.image_token = "<image>"
    proc = T.LlavaProcessor(
        image_processor=T.CLIPImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
        ),
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    cfg = T.LlavaConfig(
        vision_config=_clip(),
        text_config={"model_type": "llama", **_text(tok)},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return proc, T.LlavaForConditionalGeneration(cfg)


PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56]]


def _llava_next() -> tuple[Any, Any]:
    import transformers as T

    tok = _tokenizer(("[INST]", "[/INST]"))
    tok.image_token = "<image>"
    proc = T.LlavaNextProcessor(
        image_processor=T.LlavaNextImageProcessor(
            size={"shortest_edge": 28},
            crop_size={"height": 28, "width": 28},
            image_grid_pinpoints=PINPOINTS,
        ),
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_NEXT_TEMPLATE,
    )
    cfg = T.LlavaNextConfig(
        vision_config=_clip(),
        text_config={"model_type": "mistral", **_text(tok)},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_select_strategy="default",
    )
    return proc, T.LlavaNextForConditionalGeneration(cfg)


def _onevision() -> tuple[Any, Any]:
    import transformers as T

    base = _without_bos(_tokenizer(("<video>", "<|im_start|>", "<|im_end|>")))
    tok = T.Qwen2TokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        unk_token="<unk>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
    )
    proc = _image_only(T.LlavaOnevisionProcessor)(
        image_processor=T.LlavaOnevisionImageProcessor(
            size={"height": 28, "width": 28}, image_grid_pinpoints=PINPOINTS
        ),
        tokenizer=tok,
        num_image_tokens=4,
        vision_feature_select_strategy="full",
        chat_template=ONEVISION_TEMPLATE,
    )
    cfg = T.LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_text(tok)},
        vision_config={**_clip(), "model_type": "siglip_vision_model"},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=PINPOINTS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    return proc, T.LlavaOnevisionForConditionalGeneration(cfg)


def _qwen_tokenizer() -> Any:
    import transformers as T

    base = _without_bos(
        _tokenizer(
            (
                "<|im_start|>",
                "<|im_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|image_pad|>",
                "<|video_pad|>",
            )
        )
    )
    return T.Qwen2TokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        unk_token="<unk>",
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
    )


def _qwen(version: str) -> tuple[Any, Any]:
    import transformers as T

    tok = _qwen_tokenizer()
    image_processor = T.Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    ids = {
        name: tok.convert_tokens_to_ids(f"<|{token}|>")
        for name, token in (
            ("image_token_id", "image_pad"),
            ("video_token_id", "video_pad"),
            ("vision_start_token_id", "vision_start"),
            ("vision_end_token_id", "vision_end"),
        )
    }
    text = _text(
        tok,
        rope_theta=10000.0,
        eos_token_id=tok.eos_token_id,
        rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
    )
    common = {
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "depth": 2,
        "hidden_size": 32,
        "num_heads": 4,
    }
    if version == "2":
        proc_cls, cfg_cls, model_cls = (
            T.Qwen2VLProcessor,
            T.Qwen2VLConfig,
            T.Qwen2VLForConditionalGeneration,
        )
        vision = {**common, "embed_dim": 32, "mlp_ratio": 2}
    else:
        proc_cls, cfg_cls, model_cls = (
            T.Qwen2_5_VLProcessor,
            T.Qwen2_5_VLConfig,
            T.Qwen2_5_VLForConditionalGeneration,
        )
        vision = {
            **common,
            "intermediate_size": 64,
            "out_hidden_size": 32,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
    proc = _image_only(proc_cls)(
        image_processor=image_processor, tokenizer=tok, chat_template=QWEN_TEMPLATE
    )
    return proc, model_cls(cfg_cls(text_config=text, vision_config=vision, **ids))


def _idefics3() -> tuple[Any, Any]:
    import transformers as T

    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = _tokenizer(
        (
            "<fake_token_around_image>",
            "<image>",
            "<end_of_utterance>",
            "<global-img>",
            "<|im_start|>",
            *rows,
        )
    )
    proc = T.Idefics3Processor(
        image_processor=T.Idefics3ImageProcessor(
            size={"longest_edge": 56}, max_image_size={"longest_edge": 28}, do_image_splitting=True
        ),
        tokenizer=tok,
        image_seq_len=4,
        chat_template=IDEFICS3_TEMPLATE,
    )
    cfg = T.Idefics3Config(
        text_config={"model_type": "llama", **_text(tok)},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 7,
        },
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    return proc, T.Idefics3ForConditionalGeneration(cfg)


def _gemma3() -> tuple[Any, Any]:
    import transformers as T

    base = _tokenizer(
        (
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
            "<start_of_turn>",
            "<end_of_turn>",
        )
    )
    tok = T.GemmaTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        bos_token="<s>",
        eos_token="<end_of_turn>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    proc = T.Gemma3Processor(
        image_processor=T.Gemma3ImageProcessor(size={"height": 28, "width": 28}),
        tokenizer=tok,
        chat_template=GEMMA3_TEMPLATE,
        image_seq_length=4,
    )
    cfg = T.Gemma3Config(
        text_config={
            **_text(tok),
            "head_dim": 8,
            "sliding_window": 16,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 7,
        },
        mm_tokens_per_image=4,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.image_token_id,
    )
    return proc, T.Gemma3ForConditionalGeneration(cfg)


def _mllama() -> tuple[Any, Any]:
    import transformers as T

    tok = _tokenizer(
        (
            "<|image|>",
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
        )
    )
    tok.bos_token = "<|begin_of_text|>"
    from tokenizers import processors

    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A $B",
        special_tokens=[("<|begin_of_text|>", bos)],
    )
    proc = T.MllamaProcessor(
        image_processor=T.MllamaImageProcessor(size={"height": 28, "width": 28}, max_image_tiles=2),
        tokenizer=tok,
        chat_template=MLLAMA_TEMPLATE,
    )
    cfg = T.MllamaConfig(
        text_config={
            **_text(tok),
            "cross_attention_layers": [1],
            "rope_scaling": {"rope_type": "default"},
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 4,
            "image_size": 28,
            "patch_size": 14,
            "max_num_tiles": 2,
            "vision_output_dim": 64,
            "intermediate_layers_indices": [0],
            "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]],
        },
        image_token_index=tok.convert_tokens_to_ids("<|image|>"),
    )
    model = T.MllamaForConditionalGeneration(cfg)
    with torch.no_grad():  # zero-initialised gates would hide the image from the text
        for name, p in model.named_parameters():
            if "gate" in name:
                p.fill_(0.7)
    return proc, model


def _mistral3() -> tuple[Any, Any]:
    import transformers as T

    tok = _tokenizer(("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"))
    proc = T.PixtralProcessor(
        image_processor=T.PixtralImageProcessor(
            size={"longest_edge": 56}, patch_size={"height": 14, "width": 14}
        ),
        tokenizer=tok,
        patch_size=14,
        spatial_merge_size=2,
        chat_template=MISTRAL3_TEMPLATE,
    )
    cfg = T.Mistral3Config(
        text_config={"model_type": "mistral", **_text(tok), "head_dim": 8},
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 56,
            "patch_size": 14,
            "head_dim": 8,
        },
        spatial_merge_size=2,
        image_token_index=tok.convert_tokens_to_ids("[IMG]"),
        vision_feature_layer=-1,
    )
    return proc, T.Mistral3ForConditionalGeneration(cfg)


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "llava": _llava,
    "llava_next": _llava_next,
    "llava_onevision": _onevision,
    "qwen2_vl": lambda: _qwen("2"),
    "qwen2_5_vl": lambda: _qwen("2.5"),
    "idefics3": _idefics3,
    "gemma3": _gemma3,
    "mllama": _mllama,
    "mistral3": _mistral3,
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that scores differ clearly between options and images (the default
    0.02 init leaves a tiny model nearly uniform)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def write_tiny_vlm(
    arch: str, root: Path, seed: int = 0, byte_level: bool = False, tokenizer: str = "bpe"
) -> Path:
    """Write a tiny `arch` model, its processor and chat template under `root`, as a hub
    repository has them; returns `root`. llava only: `byte_level` (`byte_tokenizer`) or
    `tokenizer="merging"` (`merging_tokenizer`)."""
    torch.manual_seed(seed)
    tokenizer = "bytes" if byte_level else tokenizer
    if tokenizer != "bpe" and arch != "llava":
        raise ValueError("other tokenizers are offered for llava only")
    processor, model = _llava(tokenizer) if arch == "llava" else BUILDERS[arch]()
    _randomise(model, seed)
    root.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(root)
    processor.save_pretrained(root)  # the image-only subclass keeps the class name
    # LLaMA/Qwen/Gemma tokenizers return no token_type_ids (generate() refuses unused inputs).
    config = root / "tokenizer_config.json"
    config.write_text(
        json.dumps(
            {**json.loads(config.read_text()), "model_input_names": ["input_ids", "attention_mask"]}
        )
    )
    return root
