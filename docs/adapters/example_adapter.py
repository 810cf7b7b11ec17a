"""Minimal CheXbench adapter (a LLaVA-1.5-style model in transformers' format); check it with
chexbench check-adapter my_llava --adapter-file example_adapter.py --model-args pretrained=DIR
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from harness.errors import WeightsMissing
from model_adapters.base import ImageEncoding, ImageSlot, Segment, VisionLanguageAdapter
from model_adapters.loading import parse_dtype, resolve_device, weights_missing_message
from model_adapters.reference import chat_prompt, processor_reference, user_turn

HUB_ID = "llava-hf/llava-1.5-7b-hf"


class MyLlavaAdapter(VisionLanguageAdapter):
    name = "my_llava"  # what --model and the results file call it
    display_name = "LLaVA-1.5 (example)"
    max_images = 1

    def __init__(self, pretrained: str = HUB_ID, device: str = "auto", dtype: str = "auto"):
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        try:
            self.model = LlavaForConditionalGeneration.from_pretrained(pretrained, dtype=self.dtype)
            self.processor = AutoProcessor.from_pretrained(pretrained, use_fast=False)
        except OSError as exc:
            raise WeightsMissing(
                weights_missing_message(self.name, pretrained, HUB_ID, "the whole repository")
            ) from exc
        self.tokenizer = self.processor.tokenizer
        self.model.to(self.device).eval()

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # The model card's "USER: <image>\n{prompt} ASSISTANT:" after the tokenizer's BOS; the
        # image's patch embeddings go where <image> was; the option is appended to the last piece.
        return [
            *self.bos(),
            "USER: ",
            *(ImageSlot(i) for i in range(n_images)),
            f"\n{context} ASSISTANT:",
        ]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        feats = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        return [ImageEncoding(slot_embeds=f) for f in feats]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        out = self.model.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
        )
        return self.model.lm_head(out.last_hidden_state), out.past_key_values

    def reference_forward(self, context, continuation, images):  # the model's own, no cache
        prompt = chat_prompt(self.processor, user_turn(context, len(images)))
        return processor_reference(self.model, self.processor, prompt, continuation, images)
