"""CheXagent-8b, and checkpoints written by this project's `chexagent` training package.

Two loading paths:
- a folder written by `chexagent.modeling.save_bundle` (the demo model, the smoke model,
  anything our training package produced): plain transformers BLIP-2 classes, no remote code;
- the released `StanfordAIMI/CheXagent-8b`, whose modeling code lives on the hub and therefore
  needs `trust_remote_code=true`, which is only ever set by the user.

Prompt: ` USER: <s>{prompt} ASSISTANT: <s>` with at most 2 images (CheXagent-8b's released
demo.py, Stanford-AIMI/CheXagent 1eb70b4 lines 16-22); the images' query embeddings come first,
then the tokenizer's BOS. Free text uses the same template; the hub's generation_config asks for
5 beams and max_length 256, and here decoding is greedy with 512 new tokens (docs/protocol.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from chexagent.modeling import PROMPT_TEMPLATE
from harness.errors import RemoteCodeRefused, WeightsMissing
from model_adapters.base import (
    GenerationSettings,
    ImageEncoding,
    ImageSlot,
    Segment,
    VisionLanguageAdapter,
)
from model_adapters.loading import (
    check_unused,
    parse_dtype,
    resolve_device,
    weights_missing_message,
)
from model_adapters.reference import option_token_count, token_reference

HUB_ID = "StanfordAIMI/CheXagent-8b"
SMOKE = "smoke"  # pretrained=smoke: the random tiny model built from the shipped config


class CheXagentAdapter(VisionLanguageAdapter):
    name = "chexagent"
    display_name = "CheXagent"
    max_images = 2  # demo.py:18 images[:2]; hub config num_max_images 2
    generation = GenerationSettings(
        max_new_tokens=512,
        source="Stanford-AIMI/CheXagent 1eb70b4 demo.py:16-22 (template); max_new_tokens=512 as "
        "the official CheXbench code gives CheXagent (evaluation_chexbench/models/"
        "chexagent.py:47)",
        deviations=(
            "CheXagent-8b's hub generation_config (num_beams=5, max_length=256, "
            "do_sample=false): greedy, 512 new tokens here",
        ),
    )

    def __init__(
        self,
        pretrained: str = HUB_ID,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        device_map: str | None = None,
        revision: str | None = None,
        seed: int = 0,
        **unused: Any,
    ):
        check_unused("chexagent", unused)
        from chexagent.modeling import build_model, is_chexagent_checkpoint, load_bundle

        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        self.pretrained = str(pretrained)
        self.revision = revision
        self.smoke = self.pretrained == SMOKE
        if self.smoke:
            if device_map:
                raise ValueError("chexagent: the smoke model is tiny; device_map does not apply")
            bundle = build_model("tiny", seed=int(seed))
            bundle.model.to(self.device, self.dtype)
        elif is_chexagent_checkpoint(self.pretrained) and device_map:
            bundle = self._load_own_sharded(device_map)
        elif is_chexagent_checkpoint(self.pretrained):
            bundle = load_bundle(self.pretrained, dtype=self.dtype, device=self.device)
        else:
            bundle = self._load_hub(trust_remote_code, device_map)
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        self.image_processor = bundle.image_processor
        self.num_query_tokens = self.model.config.num_query_tokens
        if device_map:
            # Inputs start where the token embeddings live; the engine follows from there.
            self.device = self.model.get_input_embeddings().weight.device

    def _load_own_sharded(self, device_map: str):
        """A large checkpoint of ours, sharded over this machine's GPUs by accelerate."""
        from transformers import (
            Blip2ForConditionalGeneration,
            BlipImageProcessor,
            PreTrainedTokenizerFast,
        )

        from chexagent.modeling import ARCHS, CheXagentBundle

        model = Blip2ForConditionalGeneration.from_pretrained(
            self.pretrained, torch_dtype=self.dtype, device_map=device_map
        ).eval()
        return CheXagentBundle(
            model,
            PreTrainedTokenizerFast.from_pretrained(self.pretrained),
            BlipImageProcessor.from_pretrained(self.pretrained),
            ARCHS["paper"],
        )

    def _load_hub(self, trust_remote_code: bool, device_map: str | None):
        """The released CheXagent-8b ships its own modeling code on the hub."""
        if not trust_remote_code:
            raise RemoteCodeRefused(
                f"chexagent: {self.pretrained!r} is not a checkpoint written by this project's "
                "`chexagent` package, so it needs the model's own code from the Hugging Face hub "
                "(StanfordAIMI/CheXagent-8b ships custom modeling files). Running downloaded code "
                "is your decision: pass --trust-remote-code (or trust_remote_code=true in "
                "--model-args) to allow it."
            )
        # Imported here: the remote-code path is the only one that needs these.
        from model_adapters.chexagent_remote import load_remote_chexagent

        try:
            return load_remote_chexagent(
                self.pretrained,
                self.dtype,
                self.device,
                device_map,
                self.revision,
                trust_remote_code,
            )
        except OSError as exc:
            raise WeightsMissing(
                weights_missing_message(
                    "chexagent",
                    self.pretrained,
                    HUB_ID,
                    "the whole repository (config, *.safetensors, tokenizer, processor and the "
                    "custom *.py files)",
                )
            ) from exc

    # ----- the adapter interface -------------------------------------------------------------
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # Released layout (CheXagent-8b's processor + generate, and chexagent.prompting, which
        # trains this package's checkpoints): image queries, then the tokenizer's BOS, then the
        # chat template, whose literal "<s>" markers are BOS tokens too.
        return [
            *(ImageSlot(i) for i in range(n_images)),
            *self.bos(),
            PROMPT_TEMPLATE.format(prompt=context),
        ]

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        feats = self.model.get_image_features(pixels.to(self.device, self.dtype))
        return [ImageEncoding(slot_embeds=f) for f in feats]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

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
        """transformers' `Blip2ForConditionalGeneration` forward of the released layout (image
        query tokens, then the processor's tokens of the template with BOS, 1eb70b4
        demo.py:16-22): checkpoints of this project's package only (the hub's CheXagent-8b runs
        its own code, which has no separate reference here)."""
        from transformers import Blip2ForConditionalGeneration

        image_token = getattr(self.model.config, "image_token_index", None)
        images = images[: self.max_images]
        if (
            not isinstance(self.model, Blip2ForConditionalGeneration)
            or image_token is None
            or (not images)
        ):
            return None
        prompt = PROMPT_TEMPLATE.format(prompt=context)
        ids = self.tokenizer(prompt + continuation).input_ids
        pixels = self.image_processor(images=images, return_tensors="pt").pixel_values
        return token_reference(
            self.model,
            [image_token] * (self.num_query_tokens * len(images)) + ids,
            option_token_count(self.tokenizer, prompt, continuation),
            pixel_values=pixels.to(self.dtype),
        )

    def tokenize(self, text: str) -> list[int]:
        # "<s>" inside the template is the literal BOS marker the model was trained with.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def model_info(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        info: dict[str, Any] = {
            "model_id": self.pretrained,
            "revision": self.revision,
            "smoke": self.smoke,
            "parameters": params,
        }
        weights = Path(self.pretrained) / "model.safetensors"
        if weights.is_file():
            info["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        return info
