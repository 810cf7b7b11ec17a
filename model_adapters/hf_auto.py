"""`--model hf`: any transformers image-text-to-text model with a chat template, no code.

`AutoModelForImageTextToText` + `AutoProcessor` from a hub id or folder. The convention,
documented in docs/evaluate-any-model.md: the prompt is the processor's chat template for one
user turn (the item's images, then the question) with the generation prompt; lm-eval's
continuation (" " + option) follows; an option's score is the sum of its tokens' log-probs
under the model's own forward of `processor(text=prompt + " " + option, images=...)`. The
engine reuses the prompt's KV cache for every option (`model_adapters.native`). Free text
comes from the model's own `generate`, greedy.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import RemoteCodeRefused, UserError, WeightsMissing
from model_adapters.base import GenerationSettings
from model_adapters.loading import (
    check_unused,
    parse_dtype,
    place_model,
    resolve_device,
    weights_fingerprint,
    weights_missing_message,
)
from model_adapters.native import NativeAdapter

WHAT = (
    "the whole repository: config.json, the weight files, the processor and tokenizer "
    "files, and the chat template (chat_template.json or .jinja, or inside "
    "tokenizer_config.json)"
)


def load_processor(pretrained: str, model_type: str, common: dict[str, Any]) -> tuple[Any, str]:
    """(processor, note) for `pretrained`: `AutoProcessor`, slow image processors (the fast ones
    need torchvision and give slightly different pixels; pinned for reproducibility).

    In transformers 4.57 the processors of video-capable models (Qwen2-VL, Qwen2.5-VL,
    LLaVA-OneVision, InternVL) require a video processor, and every video processor requires
    torchvision, even when no video is ever passed. Without torchvision (no CPU wheel matches
    every torch pin), the same processor class is built without its video part: its image and
    text path is the released code, unchanged; CheXbench items hold no video. The note says
    so in the run card."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(pretrained, use_fast=False, **common), ""
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    cls = getattr(transformers, PROCESSOR_MAPPING_NAMES.get(model_type) or "", None)
    attributes = list(getattr(cls, "attributes", ()))
    if cls is None or "video_processor" not in attributes:
        raise UserError(
            f"hf: the processor of {pretrained!r} needs torchvision, which is not "
            "installed; install a torchvision build matching your torch"
        )
    image_only = type(
        cls.__name__,
        (cls,),
        {
            "attributes": [a for a in attributes if a != "video_processor"],
            "__doc__": f"{cls.__name__} without its video processor (torchvision is absent).",
        },
    )
    processor = image_only.from_pretrained(pretrained, use_fast=False, **common)
    return processor, (
        f"{cls.__name__} built without its video processor (torchvision is "
        "not installed; images only)"
    )


# Architectures whose own forward is not causal over the prompt and the option, so "prompt +
# option in one forward" is not a score of the option given the prompt.
NOT_CAUSAL = {
    "paligemma": "its forward attends bidirectionally over the whole input in eval mode (a "
    "prefix-LM), so an option's later tokens would inform its earlier ones; not supported "
    "(docs/evaluate-any-model.md)",
}


class HFAutoAdapter(NativeAdapter):
    name = "hf"
    display_name = "transformers VLM"
    # No official CheXbench protocol exists for these models: a generous limit, recorded.
    generation = GenerationSettings(
        max_new_tokens=512,
        source="CheXbench convention for models without an official "
        "CheXbench wrapper (the CheXagent-2 wrapper's limit)",
    )

    def __init__(
        self,
        pretrained: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        device_map: str | None = None,
        max_images: int | None = None,
        chat_template: str | None = None,
        attn_implementation: str | None = None,
        **unused: Any,
    ):
        check_unused("hf", unused, _KNOWN_ARGS)
        if not pretrained:
            raise UserError("hf: pretrained=HUB_ID_OR_FOLDER is required")
        from transformers import AutoConfig, AutoModelForImageTextToText

        self.pretrained, self.revision = str(pretrained), revision
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        common: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
        if revision:
            common["revision"] = revision
        try:
            config = AutoConfig.from_pretrained(self.pretrained, **common)
        except OSError as exc:
            raise WeightsMissing(
                weights_missing_message("hf", self.pretrained, self.pretrained, WHAT)
            ) from exc
        except ValueError as exc:
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise RemoteCodeRefused(
                    f"hf: {self.pretrained!r} is not a transformers architecture; its code lives "
                    "in its repository. Running it is your decision: pass --trust-remote-code"
                ) from None
            raise UserError(f"hf: {self.pretrained!r}: {exc}") from None
        if config.model_type in NOT_CAUSAL:
            raise UserError(
                f"hf: {self.pretrained!r} is {config.model_type}: {NOT_CAUSAL[config.model_type]}"
            )
        self.processor, self.processor_note = load_processor(
            self.pretrained, config.model_type, common
        )
        if chat_template:
            self.processor.chat_template = Path(chat_template).read_text(encoding="utf-8")
        if not getattr(self.processor, "chat_template", None):
            raise UserError(
                f"hf: the processor of {self.pretrained!r} has no chat template; "
                "pass chat_template=FILE (a Jinja template) in --model-args"
            )
        load: dict[str, Any] = {**common, "dtype": self.dtype}
        if device_map:
            load["device_map"] = device_map
        if attn_implementation:
            load["attn_implementation"] = attn_implementation
        self.model = AutoModelForImageTextToText.from_pretrained(self.pretrained, **load)
        self.device = place_model(self.model, self.device, device_map, load_in_8bit=False)
        self.max_images = max_images
        if self.processor_note:  # recorded in the run card's generation block
            self.generation = replace(self.generation, deviations=(self.processor_note,))
        self.architecture = config.model_type
        self.display_name = Path(self.pretrained.rstrip("/")).name

    def model_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model_id": self.pretrained,
            "revision": self.revision,
            "smoke": False,
            "architecture": self.architecture,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(self.dtype).replace("torch.", ""),
        }
        if self.processor_note:
            info["processor"] = self.processor_note
        info["chat_template_sha256"] = hashlib.sha256(
            json.dumps(self.processor.chat_template).encode()
        ).hexdigest()
        weights = weights_fingerprint(self.pretrained)  # a local folder; a hub id has revision
        if weights:
            info["weights_sha256"] = weights
        return info


# The model args `--model hf` takes, from its signature (an error lists them; never retyped).
_KNOWN_ARGS = tuple(
    name
    for name in inspect.signature(HFAutoAdapter.__init__).parameters
    if name not in ("self", "unused")
)
