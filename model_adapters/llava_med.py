"""LLaVA-Med on transformers' `LlavaForConditionalGeneration`.

The released checkpoints use the LLaVA repository's own layout; convert them once with
`chexbench convert llava-med SRC DST` (model_adapters/converters/llava_med.py) and pass
`pretrained=DST`.

Official evaluation (Stanford-AIMI/CheXagent, evaluation_chexbench/models/llavamed.py): no chat
template; prompt `{question}\\n` + the image's patch tokens + ` {option}`, BOS first
(`<im_start>`/`<im_end>` around the patches when the checkpoint was trained with them); CLIP
preprocessing (pad-to-square first for v1.5's `image_aspect_ratio: pad`); one image.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from harness.errors import UserError
from model_adapters.base import ImageEncoding, ImageSlot, Segment, VisionLanguageAdapter
from model_adapters.blip2 import (
    check_unused,
    from_pretrained_kwargs,
    load_or_explain,
    place_model,
    weights_fingerprint,
)
from model_adapters.loading import parse_dtype, resolve_device

CONVERT_HINT = (
    "Download microsoft/llava-med-v1.5-mistral-7b (`huggingface-cli download "
    "microsoft/llava-med-v1.5-mistral-7b --local-dir models/llava-med-src`), run `chexbench "
    "convert llava-med models/llava-med-src models/llava-med`, then pass pretrained=models/llava-med"
)


class LlavaMedAdapter(VisionLanguageAdapter):
    name = "llava_med"
    display_name = "LLaVA-Med"
    max_images = 1  # the official code asserts one image

    def __init__(self, pretrained: str | None = None, dtype: str = "auto", device: str = "auto",
                 load_in_8bit: bool = False, device_map: str | None = None,
                 revision: str | None = None, trust_remote_code: bool = False, **unused: Any):
        from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

        check_unused(self.name, unused)
        if trust_remote_code:
            raise UserError("llava_med: runs on transformers' own Llava classes; "
                            "trust_remote_code is never needed or used")
        if not pretrained:
            raise UserError(f"llava_med: pretrained=PATH (a converted folder) is required. "
                            f"{CONVERT_HINT}")
        self.pretrained, self.revision = str(pretrained), revision
        self.load_in_8bit = bool(load_in_8bit)
        requested = resolve_device(device)
        self.dtype = parse_dtype(dtype, requested)
        kwargs = from_pretrained_kwargs(self.name, self.dtype, requested, self.load_in_8bit,
                                        device_map, revision)
        what = "the converted folder"
        self.model = load_or_explain(LlavaForConditionalGeneration, self.pretrained, self.name,
                                     "(converted) LLaVA-Med", what, **kwargs)
        if getattr(self.model.config, "chexbench_arch", None) != "llava_med":
            raise UserError(f"llava_med: {pretrained} was not written by `chexbench convert "
                            f"llava-med`. {CONVERT_HINT}")
        self.tokenizer = load_or_explain(AutoTokenizer, self.pretrained, self.name,
                                         "(converted) LLaVA-Med", what)
        self.image_processor = load_or_explain(AutoImageProcessor, self.pretrained, self.name,
                                               "(converted) LLaVA-Med", what)
        self.device = place_model(self.model, requested, device_map, self.load_in_8bit)
        self.im_start_end = bool(getattr(self.model.config, "chexbench_mm_use_im_start_end", False))

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # Official template (evaluation_chexbench/models/llavamed.py): qs + '\n' + patches,
        # then f" {option}" (the option is the continuation appended to the last piece).
        if n_images == 0:
            return [*self.bos(), context]
        if self.im_start_end:
            return [*self.bos(), f"{context}\n<im_start>", ImageSlot(0), "<im_end>"]
        return [*self.bos(), f"{context}\n", ImageSlot(0), ""]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        cfg = self.model.config
        tower = self.model.model.vision_tower
        pixels = pixels.to(next(tower.parameters()).device, self.dtype)
        hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        feats = hidden[cfg.vision_feature_layer]
        if cfg.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]  # LLaVA's "patch" features: drop CLS
        return [ImageEncoding(slot_embeds=p) for p in self.model.model.multi_modal_projector(feats)]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    def lm_forward(self, inputs_embeds, attention_mask, position_ids, past_key_values=None,
                   media=None):
        out = self.model.model.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            position_ids=position_ids, past_key_values=past_key_values, use_cache=True,
        )
        return self.model.lm_head(out.last_hidden_state), out.past_key_values

    def model_info(self) -> dict[str, Any]:
        return {"model_id": self.pretrained, "revision": self.revision, "smoke": False,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "weights_sha256": weights_fingerprint(self.pretrained),
                "load_in_8bit": self.load_in_8bit, "dtype": str(self.dtype).replace("torch.", "")}
