"""Med-Flamingo (OpenFlamingo-9B architecture fine-tuned on medical data) for CheXbench.

What the user downloads (no code from any of them is run):
- `med-flamingo/med-flamingo` -> `model.pt` (the Flamingo-side weights);
- a LLaMA-7B (v1) in Hugging Face format (config.json, tokenizer, weights), e.g. converted from
  Meta's release with transformers' `convert_llama_weights_to_hf.py`;
- `openai/clip-vit-large-patch14` (config, weights, preprocessor_config.json).
Default layout: `pretrained=DIR` with `DIR/model.pt`, `DIR/llama-7b-hf/`,
`DIR/clip-vit-large-patch14/`; `llama=` and `clip=` override the last two.

Prompt (Stanford-AIMI/CheXagent evaluation_chexbench/models/medflamingo.py:90-96), tokenised
whole with BOS: `You are a helpful medical assistant. You are being provided with images, a
question about the image and an answer. Answer the question. <image>Question: {question}
Answer: {option}`, one image (:101 asserts it). The option is scored from the token holding its
first character to the end (:121-126). Free text (:139-166): the shorter generation prefix,
128 new tokens, greedy, stop on `<|endofchunk|>` only (open-flamingo 0.0.2 passes it as the
EOS), then `clean_generation`. Preprocessing: CLIP's own (shortest side 224 bicubic, centre
crop, OpenAI mean/std), deterministic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from harness.errors import UserError, WeightsMissing
from model_adapters.base import (
    GenerationSettings,
    ImageEncoding,
    ImageSlot,
    Segment,
    TokenIds,
    VisionLanguageAdapter,
)
from model_adapters.loading import check_unused, parse_dtype, resolve_device
from model_adapters.medflamingo.checkpoint import assemble
from model_adapters.medflamingo.modeling import MEDIA_ATTENTION, FlamingoSpec
from model_adapters.medflamingo.state_dict import load_tensors
from model_adapters.spans import from_first_char, option_text

HUB_ID = "med-flamingo/med-flamingo"
CLIP_HUB_ID = "openai/clip-vit-large-patch14"
CHECKPOINT_FILE = "model.pt"
OFFICIAL = "Stanford-AIMI/CheXagent evaluation_chexbench/models/medflamingo.py"
MEDIA_TOKEN = "<image>"
# OFFICIAL:91-94, the text before <image> in multiple choice, verbatim.
SYSTEM_PROMPT = (
    "You are a helpful medical assistant. You are being provided with images, a "
    "question about the image and an answer. Answer the question. "
)
# OFFICIAL:144-146, the text before <image> in generate(), verbatim (no "and an answer").
GENERATION_PROMPT = (
    "You are a helpful medical assistant. You are being provided with images "
    "and a question about the image. "
)
DOWNLOAD_HELP = (
    "Med-Flamingo needs three downloads: (1) `model.pt` from the Hugging Face repository "
    f"{HUB_ID!r} (`huggingface-cli download {HUB_ID} model.pt --local-dir models/med-flamingo`); "
    "(2) LLaMA-7B (v1) in Hugging Face format in models/med-flamingo/llama-7b-hf/ (config.json, "
    "tokenizer files, weights; convert Meta's release with transformers' "
    "convert_llama_weights_to_hf.py); (3) "
    f"{CLIP_HUB_ID!r} in models/med-flamingo/clip-vit-large-patch14/ (`huggingface-cli download "
    f"{CLIP_HUB_ID} --local-dir models/med-flamingo/clip-vit-large-patch14`). Then pass "
    "--model-args pretrained=models/med-flamingo (or llama=DIR,clip=DIR to point elsewhere)."
)


def _resolve_checkpoint(pretrained: str, revision: str | None) -> Path:
    path = Path(pretrained)
    if path.is_file():
        return path
    if (path / CHECKPOINT_FILE).is_file():
        return path / CHECKPOINT_FILE
    if pretrained == HUB_ID:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(HUB_ID, CHECKPOINT_FILE, revision=revision))
        except Exception as exc:  # offline, gated, absent: all end in the same advice
            raise WeightsMissing(
                f"medflamingo: cannot fetch {HUB_ID}/{CHECKPOINT_FILE} "
                f"({exc.__class__.__name__}). {DOWNLOAD_HELP}"
            ) from exc
    raise WeightsMissing(f"medflamingo: no {CHECKPOINT_FILE} at {pretrained!r}. {DOWNLOAD_HELP}")


def _require_dir(kind: str, path: str | Path) -> str:
    if Path(path).is_dir() and (Path(path) / "config.json").is_file():
        return str(path)
    raise WeightsMissing(
        f"medflamingo: no {kind} folder (with config.json) at {str(path)!r}. {DOWNLOAD_HELP}"
    )


def _check_loading_info(kind: str, path: str, info: dict[str, Any]) -> None:
    if info.get("missing_keys"):
        raise ValueError(
            f"medflamingo: the {kind} at {path!r} lacks weights for "
            f"{sorted(info['missing_keys'])[:12]}"
        )


class MedFlamingoAdapter(VisionLanguageAdapter):
    name = "medflamingo"
    display_name = "Med-Flamingo"
    max_images = 1  # OFFICIAL:101 asserts one image (MC and generate())
    generation = GenerationSettings(
        max_new_tokens=128,
        source=f"{OFFICIAL}:139-166; open_flamingo 0.0.2 src/flamingo.py:107-170",
        deviations=(
            "official decode keeps special tokens (a trailing '<|endofchunk|>', any "
            "'</s>'); here they are skipped",
        ),
    )

    def __init__(
        self,
        pretrained: str = HUB_ID,
        path: str | None = None,
        llama: str | None = None,
        clip: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        device_map: str | None = None,
        media_attention: str = "released",
        revision: str | None = None,
        **unused: Any,
    ):
        check_unused("medflamingo", unused)
        if media_attention not in MEDIA_ATTENTION:
            raise ValueError(f"medflamingo: media_attention must be one of {MEDIA_ATTENTION}")
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessor,
            CLIPVisionModel,
            LlamaForCausalLM,
        )

        self.pretrained = str(path or pretrained)
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        self.checkpoint_path = _resolve_checkpoint(self.pretrained, revision)
        base = self.checkpoint_path.parent
        llama_dir = _require_dir("LLaMA-7B (HF format)", llama or base / "llama-7b-hf")
        clip_dir = clip or base / "clip-vit-large-patch14"
        clip_dir = (
            _require_dir("CLIP ViT-L/14", clip_dir)
            if (clip or Path(clip_dir).is_dir())
            else CLIP_HUB_ID
        )

        tokenizer = AutoTokenizer.from_pretrained(llama_dir)
        # Same order as open-flamingo 0.0.2's factory, so ids match the checkpoint's rows.
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<PAD>"})
        self.tokenizer = tokenizer
        self.media_token_id = tokenizer.convert_tokens_to_ids("<image>")
        self.eoc_token_id = tokenizer.convert_tokens_to_ids("<|endofchunk|>")

        language_model, info = LlamaForCausalLM.from_pretrained(
            llama_dir, torch_dtype=self.dtype, output_loading_info=True
        )
        _check_loading_info("LLaMA", llama_dir, info)
        try:
            vision, info = CLIPVisionModel.from_pretrained(
                clip_dir, torch_dtype=self.dtype, output_loading_info=True
            )
            self.image_processor = CLIPImageProcessor.from_pretrained(clip_dir)
        except OSError as exc:
            raise WeightsMissing(
                f"medflamingo: cannot load CLIP from {clip_dir!r}. {DOWNLOAD_HELP}"
            ) from exc
        _check_loading_info("CLIP vision tower", str(clip_dir), info)
        model = assemble(
            load_tensors(str(self.checkpoint_path)),
            language_model,
            vision,
            self.media_token_id,
            len(tokenizer),
            FlamingoSpec(),
            media_attention,
            origin=str(self.checkpoint_path),
        )
        model = model.to(self.dtype).eval()
        if device_map == "auto":
            from accelerate import dispatch_model, infer_auto_device_map

            placement = infer_auto_device_map(
                model,
                dtype=self.dtype,
                no_split_module_classes=[
                    "LlamaDecoderLayer",
                    "CLIPEncoderLayer",
                    "GatedCrossAttentionBlock",
                    "PerceiverResampler",
                ],
            )
            model = dispatch_model(model, device_map=placement)
            self.device = next(model.vision_encoder.parameters()).device
        elif device_map not in (None, ""):
            raise ValueError("medflamingo: device_map must be 'auto' or unset")
        else:
            model = model.to(self.device)
        self.model = model

    # ----- the adapter interface -------------------------------------------------------------
    def _template(self, head: str, question: str, n_images: int) -> list[Segment]:
        """The official string `head + <image> + question`, tokenised whole with BOS
        (OFFICIAL:41-44): `head` as it starts the string, `question` as it follows `<image>`
        (see `tokenize`), the `<image>` token's embedding at the image slot."""
        if n_images == 0:  # no official text-only call: the same text without `<image>`
            ids = self.tokenizer(head + question, add_special_tokens=False)["input_ids"]
            return [*self.bos(), TokenIds(tuple(ids)), ""]
        head_ids = self.tokenizer(head, add_special_tokens=False)["input_ids"]
        return [*self.bos(), TokenIds(tuple(head_ids)), ImageSlot(0), question]

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL:90-96 f"{SYSTEM_PROMPT}<image>Question: {question} Answer: {option}".
        return self._template(SYSTEM_PROMPT, f"Question: {context} Answer:", n_images)

    def generation_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL:144-148 "...about the image. <image>Question: {} Answer: ".
        return self._template(GENERATION_PROMPT, f"Question: {context} Answer: ", n_images)

    def tokenize(self, text: str) -> list[int]:
        """Text pieces here all follow the `<image>` token in the official string, and a LLaMA
        tokenizer may write text after a special token differently from text on its own (the
        legacy "▁" prefix or not), so the piece is tokenised after `<image>`, which is dropped."""
        ids = self.tokenizer(MEDIA_TOKEN + text, add_special_tokens=False)["input_ids"]
        if not ids or ids[0] != self.media_token_id:
            raise UserError(f"medflamingo: {MEDIA_TOKEN} is not one token for this tokenizer")
        return list(ids[1:])

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL:121-126: from char_to_token(prompt.rfind(option)) to the end of the row.
        return from_first_char(
            self.tokenizer, last_piece + continuation, option_text(continuation), lead=MEDIA_TOKEN
        )

    def postprocess_generation(self, text: str) -> str:
        return text.replace("<unk> ", "").strip()  # OFFICIAL:52-56 clean_generation

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        latents = self.model.encode_images(pixels.to(self.device, self.dtype))
        marker = self.model.media_marker().detach()[None]
        return [ImageEncoding(slot_embeds=marker, media=m) for m in latents]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.language_model.get_input_embeddings()(ids)

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        out = self.model.forward_lm(
            inputs_embeds, attention_mask, position_ids, past_key_values, media
        )
        return out.logits, out.past_key_values

    @property
    def eos_token_ids(self) -> list[int]:
        # open_flamingo 0.0.2 flamingo.py:159 generate(eos_token_id=self.eoc_token_id): the only
        # stop; a "</s>" does not end the text.
        return [self.eoc_token_id]

    def model_info(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        with open(self.checkpoint_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
        return {
            "model_id": self.pretrained,
            "revision": self.revision,
            "weights_sha256": digest.hexdigest(),
            "smoke": False,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "media_attention": self.model.media_attention,
        }
