"""The CheXagent architecture: vision encoder -> Q-Former -> linear bridger -> causal LM.

It is transformers' BLIP-2 (vision tower, Q-Former with learnable queries, `language_projection`
as the bridger) around a Mistral decoder, so checkpoints are plain `save_pretrained` folders
that load with `Blip2ForConditionalGeneration.from_pretrained` and need no remote code.
Images enter the LM as `num_query_tokens` embeddings per image, spliced at `<image>` tokens
placed before the text (one run of query tokens per image).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipImageProcessor,
    MistralConfig,
    PreTrainedTokenizerFast,
)

from chexagent.tokenizer import IMAGE_TOKEN, load_tokenizer

MARKER_FILE = "chexagent.json"  # identifies a checkpoint written by this package
PROMPT_TEMPLATE = " USER: <s>{prompt} ASSISTANT: <s>"  # CheXagent-8b model card


@dataclass(frozen=True)
class CheXagentArch:
    """Sizes of one configuration. `paper` is Table 8's model; `tiny` trains on a laptop CPU."""

    name: str
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    qformer_hidden: int
    qformer_layers: int
    qformer_heads: int
    qformer_intermediate: int
    num_query_tokens: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    max_positions: int
    vocab_size: int | None = None  # None: the tokenizer's size
    max_images: int = 2


ARCHS: dict[str, CheXagentArch] = {
    # EVA-CLIP-g ViT at 448 px (32x32 = 1024 patches), BERT-base Q-Former with 128 queries,
    # Mistral-7B. Never instantiated in tests. 39 ViT layers: the EVA-CLIP-g tower as BLIP-2
    # releases it (LAVIS drops the last of EVA's 40 layers; transformers' Blip2VisionConfig
    # defaults to 39), so `--init-vision Salesforce/blip2-opt-2.7b` loads into it.
    "paper": CheXagentArch(
        name="paper",
        image_size=448,
        patch_size=14,
        vision_hidden=1408,
        vision_layers=39,
        vision_heads=16,
        vision_intermediate=6144,
        qformer_hidden=768,
        qformer_layers=12,
        qformer_heads=12,
        qformer_intermediate=3072,
        num_query_tokens=128,
        text_hidden=4096,
        text_layers=32,
        text_heads=32,
        text_kv_heads=8,
        text_intermediate=14336,
        max_positions=32768,
        vocab_size=32000,
    ),
    "tiny": CheXagentArch(
        name="tiny",
        image_size=64,
        patch_size=8,
        vision_hidden=64,
        vision_layers=2,
        vision_heads=4,
        vision_intermediate=128,
        qformer_hidden=64,
        qformer_layers=2,
        qformer_heads=4,
        qformer_intermediate=128,
        num_query_tokens=8,
        text_hidden=96,
        text_layers=2,
        text_heads=4,
        text_kv_heads=2,
        text_intermediate=192,
        max_positions=1024,
    ),
}
# The shipped demo model: `tiny` with a wider, deeper ViT (128 wide, 4 layers) and a Q-Former as
# wide as that ViT. At tiny's 64-wide, 2-layer ViT, a probe on the warmed-up features stayed near
# the base rate for pneumothorax and lung nodules (0.86 / 0.87, base 0.80 / 0.86); this ViT reads
# them (0.99 / 0.97). A 64-wide Q-Former passed on the nodule's side at 0.66 (base 0.56), a
# 128-wide one at 0.93 (docs/training.md). Still trains on 2 CPU cores in minutes; tests keep
# using `tiny`.
ARCHS["demo"] = replace(
    ARCHS["tiny"],
    name="demo",
    vision_hidden=128,
    vision_layers=4,
    vision_intermediate=256,
    qformer_hidden=128,
    qformer_intermediate=256,
)


@dataclass
class CheXagentBundle:
    model: Blip2ForConditionalGeneration
    tokenizer: PreTrainedTokenizerFast
    image_processor: BlipImageProcessor
    arch: CheXagentArch


def build_config(
    arch: CheXagentArch, tokenizer: PreTrainedTokenizerFast, qformer_text_input: bool = False
) -> Blip2Config:
    """`qformer_text_input` adds the Q-Former's text feed-forward path, which stage 1's
    contrastive and captioning objectives run text through (BLIP-2's design); inference never
    uses it, and checkpoints with or without it load the same way.

    The ViT initialises at 0.02, not BLIP-2's 1e-10: that default assumes pretrained weights get
    loaded over it, and a ViT trained from scratch (the demo recipe) or a random smoke model
    with near-zero weights barely sees its image. Loaded weights replace either."""
    vocab = arch.vocab_size or len(tokenizer)
    vision = Blip2VisionConfig(
        hidden_size=arch.vision_hidden,
        intermediate_size=arch.vision_intermediate,
        num_hidden_layers=arch.vision_layers,
        num_attention_heads=arch.vision_heads,
        image_size=arch.image_size,
        patch_size=arch.patch_size,
    )
    vision.initializer_range = 0.02
    qformer = Blip2QFormerConfig(
        hidden_size=arch.qformer_hidden,
        num_hidden_layers=arch.qformer_layers,
        num_attention_heads=arch.qformer_heads,
        intermediate_size=arch.qformer_intermediate,
        encoder_hidden_size=arch.vision_hidden,
        vocab_size=30522,
        use_qformer_text_input=qformer_text_input,
    )
    text = MistralConfig(
        vocab_size=vocab,
        hidden_size=arch.text_hidden,
        intermediate_size=arch.text_intermediate,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        num_key_value_heads=arch.text_kv_heads,
        max_position_embeddings=arch.max_positions,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=arch.num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    return config


def build_image_processor(arch: CheXagentArch) -> BlipImageProcessor:
    """Deterministic resize + normalise (no crops, no augmentation)."""
    return BlipImageProcessor(
        size={"height": arch.image_size, "width": arch.image_size},
        do_resize=True,
        resample=3,
        do_normalize=True,
        do_convert_rgb=True,
    )


def build_model(
    arch_name: str = "tiny", seed: int = 0, qformer_text_input: bool = False
) -> CheXagentBundle:
    """A randomly initialised model, bit-identical for a given seed (the smoke model).

    Training from scratch passes `qformer_text_input=True` (stage 1's Q-Former text path).
    """
    if arch_name not in ARCHS:
        raise ValueError(f"unknown CheXagent config {arch_name!r}; known: {sorted(ARCHS)}")
    arch = ARCHS[arch_name]
    tokenizer = load_tokenizer()
    config = build_config(arch, tokenizer, qformer_text_input=qformer_text_input)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        # transformers zeroes the queries (it expects them loaded from a checkpoint): identical
        # queries get identical gradients, so from scratch they would never tell apart. BLIP-2
        # draws them from N(0, initializer_range).
        model.query_tokens.normal_(mean=0.0, std=config.qformer_config.initializer_range)
    model.eval()
    return CheXagentBundle(model, tokenizer, build_image_processor(arch), arch)


def save_bundle(bundle: CheXagentBundle, path: str | Path, extra: dict | None = None) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bundle.model.save_pretrained(path, safe_serialization=True)
    bundle.tokenizer.save_pretrained(path)
    bundle.image_processor.save_pretrained(path)
    marker = {
        "format": "chexagent",
        "version": 1,
        "arch": asdict(bundle.arch),
        "prompt_template": PROMPT_TEMPLATE,
        **(extra or {}),
    }
    (path / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def is_chexagent_checkpoint(path: str | Path) -> bool:
    return (Path(path) / MARKER_FILE).is_file()


def load_bundle(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> CheXagentBundle:
    """Load a checkpoint written by `save_bundle` (no remote code involved)."""
    path = Path(path)
    if not is_chexagent_checkpoint(path):
        raise FileNotFoundError(f"{path}: not a chexagent checkpoint (no {MARKER_FILE})")
    marker = json.loads((path / MARKER_FILE).read_text())
    arch = CheXagentArch(**marker["arch"])
    model = Blip2ForConditionalGeneration.from_pretrained(path, torch_dtype=dtype).to(device)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    processor = BlipImageProcessor.from_pretrained(path)
    return CheXagentBundle(model, tokenizer, processor, arch)
