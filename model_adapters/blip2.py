"""BLIP-2 (`Salesforce/blip2-opt-2.7b`) on transformers' native `Blip2ForConditionalGeneration`.

Official evaluation (Stanford-AIMI/CheXagent, evaluation_chexbench/models/blip2.py): 8-bit
fp16 weights, one image, prompt `{question} {option}` after the image's query embeddings, the
tokenizer's BOS (OPT's `</s>`, id 2) between them (the model prepends the queries to the
tokenised prompt); the option's ids are `tok(" " + option)[1:]`, found at the end of the row.
The official call passes `images=None` to the processor, which on transformers >= 4.57 inserts
no image tokens, so the image is silently dropped there (docs/protocol.md); the engine splices
the queries itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from harness.errors import UserError
from model_adapters.base import (
    GenerationSettings,
    ImageEncoding,
    ImageSlot,
    Segment,
    VisionLanguageAdapter,
)
from model_adapters.loading import (
    check_unused,
    from_pretrained_kwargs,
    load_or_explain,
    parse_dtype,
    place_model,
    resolve_device,
    weights_fingerprint,
)
from model_adapters.reference import token_reference
from model_adapters.spans import option_text, trailing_standalone

OFFICIAL = "Stanford-AIMI/CheXagent evaluation_chexbench/models"  # cited as OFFICIAL/<file>:<line>


# ----- the adapter -----------------------------------------------------------------------------
class Blip2Adapter(VisionLanguageAdapter):
    """Image query embeddings, then BOS, then the prompt: transformers' BLIP-2 input order."""

    name = "blip2"
    display_name = "BLIP-2"
    max_images = 1  # the official code asserts a single image ("BLIP2 only support one image")
    # The official wrapper has no generate() and BLIP-2 is in neither Table 3 nor Table 4.
    generation = GenerationSettings(
        max_new_tokens=256,
        source=f"none ({OFFICIAL}/blip2.py has no generate())",
        deviations=("no official generation protocol: the multiple-choice template, greedy",),
    )
    hub_id: ClassVar[str] = "Salesforce/blip2-opt-2.7b"
    what_to_download: ClassVar[str] = (
        "config.json, the *.safetensors shards, the tokenizer files and preprocessor_config.json"
    )

    def __init__(
        self,
        pretrained: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        load_in_8bit: bool = False,
        device_map: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **unused: Any,
    ):
        check_unused(self.name, unused)
        if trust_remote_code:
            raise UserError(
                f"{self.name}: transformers ships this architecture; "
                "trust_remote_code is never needed or used"
            )
        self.pretrained = str(pretrained or self.hub_id)
        self.revision = revision
        self.load_in_8bit = bool(load_in_8bit)
        requested = resolve_device(device)
        self.dtype = parse_dtype(dtype, requested)
        kwargs = from_pretrained_kwargs(
            self.name, self.dtype, requested, self.load_in_8bit, device_map, revision
        )
        self.model, self.tokenizer, self.image_processor = self._load(kwargs)
        self.device = place_model(self.model, requested, device_map, self.load_in_8bit)
        self._vision_device = next(self.model.vision_model.parameters()).device

    # ----- loading -----------------------------------------------------------------------------
    def _load(self, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        from transformers import AutoImageProcessor, AutoTokenizer, Blip2ForConditionalGeneration

        model = load_or_explain(
            Blip2ForConditionalGeneration,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            **kwargs,
        )
        tok_kwargs = {"revision": self.revision} if self.revision else {}
        tokenizer = load_or_explain(
            AutoTokenizer,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            **tok_kwargs,
        )
        processor = load_or_explain(
            AutoImageProcessor,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            **tok_kwargs,
        )
        return model, tokenizer, processor

    # ----- the adapter interface ---------------------------------------------------------------
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL/blip2.py:22-24 f"{question} {option}", tokenised whole with the tokenizer's
        # BOS (:37); the query embeddings go before it (transformers 4.36/4.40
        # modeling_blip_2.py: torch.cat([language_model_inputs, inputs_embeds])).
        images: list[Segment] = [ImageSlot(i) for i in range(n_images)]
        return [*images, *self.bos(), context]

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL/blip2.py:43-47: tok(f" {ans}").input_ids[1:], asserted to be the row's end.
        whole = self.tokenize(last_piece + continuation)
        return trailing_standalone(whole, self.tokenize(" " + option_text(continuation)))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Vision tower output (post-layernorm), the Q-Former's cross-attention input."""
        pixels = pixels.to(self._vision_device, self.dtype)
        return self.model.vision_model(pixel_values=pixels, return_dict=True).last_hidden_state

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        feats = self.vision_features(pixels)
        mask = torch.ones(feats.shape[:-1], dtype=torch.long, device=feats.device)
        queries = self.model.query_tokens.expand(feats.shape[0], -1, -1)
        out = self.model.qformer(
            query_embeds=queries,
            encoder_hidden_states=feats,
            encoder_attention_mask=mask,
            return_dict=True,
        ).last_hidden_state
        return [ImageEncoding(slot_embeds=p) for p in self.model.language_projection(out)]

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
        return out.logits, out.past_key_values

    def reference_forward(
        self, context: str, continuation: str, images: list[Image.Image]
    ) -> tuple[float, bool, int] | None:
        """The model's own forward of the official row (OFFICIAL/blip2.py:22-47: tok(f"{q} {o}")
        with BOS, the span tok(" " + o)[1:] at its end) after the image's query tokens, which
        `Blip2ForConditionalGeneration` fills with the Q-Former's output itself."""
        image_token = getattr(self.model.config, "image_token_index", None)
        if image_token is None or not images:
            return None
        row = self.tokenizer(context + continuation).input_ids
        n = len(self.tokenizer(" " + option_text(continuation)).input_ids) - 1
        pixels = self.image_processor(images=images[:1], return_tensors="pt").pixel_values
        return token_reference(
            self.model,
            [image_token] * self.model.config.num_query_tokens + row,
            n,
            pixel_values=pixels.to(self.dtype),
        )

    def model_info(self) -> dict[str, Any]:
        return {
            "model_id": self.pretrained,
            "revision": self.revision,
            "smoke": False,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights_sha256": weights_fingerprint(self.pretrained),
            "load_in_8bit": self.load_in_8bit,
            "dtype": str(self.dtype).replace("torch.", ""),
        }
