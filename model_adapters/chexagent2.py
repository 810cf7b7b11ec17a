"""CheXagent-2-3b (`StanfordAIMI/CheXagent-2-3b`), whose modeling code lives on the hub.

Loading runs that code, so it happens only when the user passes `trust_remote_code=true`
(or `--trust-remote-code`). The prompt is the model's own chat template with the system turn
"You are a helpful assistant." and the images placed the way the tokenizer's
`from_list_format` places them (`Picture i:<|img|>...<|/img|>\n` before the text), exactly as
the official evaluation builds it (Stanford-AIMI/CheXagent, evaluation_chexbench/models/
chexagent.py:34-38); no BOS (the tokenizer's add_bos_token is False). The image embeddings
fill the span between `<|img|>` and `<|/img|>`. Official multiple choice is generation-based
(`--mc-mode generate`, the engine's lettered prompt and `\\(([A-Z])\\)` parse; an
unparseable answer counts as wrong and is counted). Free text: greedy, 512 new tokens
(:39-49); the official decode drops the last generated token, the EOS the engine stops on.

Not verified against the hub code (it cannot be fetched here): where the vision encoder sits.
The default `vision_module=transformer.visual` is Qwen-VL's layout, whose `visual` module maps a
preprocessed batch to the embeddings that replace the tokens between `<img>` and `</img>` and
carries `image_transform`; pass `vision_module=...` if CheXagent-2 names it differently.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from PIL import Image

from harness.errors import RemoteCodeRefused, UserError
from model_adapters.base import (
    GenerationSettings,
    ImageEncoding,
    ImageSlot,
    Segment,
    TokenIds,
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

HUB_ID = "StanfordAIMI/CheXagent-2-3b"
SYSTEM_PROMPT = "You are a helpful assistant."  # official evaluation and model card
_MARK = "\x00chexbench-image-{}\x00"  # stands where the image goes while the template renders
# The image tags of CheXagent-2's tokenizer (its `image_start_tag` / `image_end_tag`).
IMAGE_TAGS = ("<|img|>", "<|/img|>")


class CheXagent2Adapter(VisionLanguageAdapter):
    name = "chexagent2"
    display_name = "CheXagent-2"
    generation = GenerationSettings(
        max_new_tokens=512,
        source="Stanford-AIMI/CheXagent evaluation_chexbench/models/chexagent.py:34-50",
        deviations=(
            "official decode(output[prompt:-1]) drops the last generated token: the EOS "
            "when generation stopped (the engine drops it too), a real token when the "
            "512-token limit was hit (kept here)",
        ),
    )

    def __init__(
        self,
        pretrained: str = HUB_ID,
        dtype: str = "auto",
        device: str = "auto",
        device_map: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        load_in_8bit: bool = False,
        vision_module: str = "transformer.visual",
        **unused: Any,
    ):
        check_unused(self.name, unused)
        self.pretrained, self.revision = str(pretrained), revision
        if not trust_remote_code:
            raise RemoteCodeRefused(
                f"chexagent2: {self.pretrained!r} ships its own modeling and tokenizer code on the "
                "Hugging Face hub (CheXagent-2 is not a transformers architecture), and loading it "
                "means running that code. That is your decision: pass --trust-remote-code (or "
                "trust_remote_code=true in --model-args) to allow it."
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        requested = resolve_device(device)
        self.dtype = parse_dtype(dtype, requested)
        self.load_in_8bit = bool(load_in_8bit)
        kwargs = from_pretrained_kwargs(
            self.name, self.dtype, requested, self.load_in_8bit, device_map, revision
        )
        what = "the whole repository (config, weights, tokenizer files and the custom *.py files)"
        self.tokenizer = load_or_explain(
            AutoTokenizer,
            self.pretrained,
            self.name,
            HUB_ID,
            what,
            trust_remote_code=trust_remote_code,
            **({"revision": revision} if revision else {}),
        )
        self.model = load_or_explain(
            AutoModelForCausalLM,
            self.pretrained,
            self.name,
            HUB_ID,
            what,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
        self.device = place_model(self.model, requested, device_map, self.load_in_8bit)
        try:
            self.visual = operator.attrgetter(vision_module)(self.model)
        except AttributeError:
            raise UserError(
                f"chexagent2: the loaded model has no module {vision_module!r}; pass "
                "vision_module=<dotted path of its vision encoder>"
            ) from None
        if not hasattr(self.visual, "image_transform"):
            raise UserError(
                f"chexagent2: {vision_module} has no image_transform (the model's "
                "own preprocessing); cannot preprocess images deterministically"
            )

    # ----- prompt ------------------------------------------------------------------------------
    def _query(self, context: str, n_images: int) -> str:
        items = [*({"image": _MARK.format(i)} for i in range(n_images)), {"text": context}]
        if hasattr(self.tokenizer, "from_list_format"):
            return self.tokenizer.from_list_format(items)
        # CheXagent-2's from_list_format (tokenization_chexagent.py), for stand-in tokenizers
        start, end = IMAGE_TAGS
        pics = "".join(f"Picture {i + 1}:{start}{_MARK.format(i)}{end}\n" for i in range(n_images))
        return pics + context

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # chexagent.py:36-38: from_list_format([images..., text]), a system and a human turn,
        # apply_chat_template(add_generation_prompt=True), tokenised without special tokens.
        conv = [
            {"from": "system", "value": SYSTEM_PROMPT},
            {"from": "human", "value": self._query(context, n_images)},
        ]
        text = self.tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        start, end = (self.tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TAGS)
        segments: list[Segment] = []
        for i in range(n_images):
            # The tags are tokens of their own; the model overwrites what lies between them.
            before, sep, text = text.partition(f"{IMAGE_TAGS[0]}{_MARK.format(i)}{IMAGE_TAGS[1]}")
            if not sep:
                raise ValueError(f"chexagent2: the chat template dropped image {i}")
            segments += [before, TokenIds((start,)), ImageSlot(i), TokenIds((end,))]
        return [*segments, text]

    # ----- model -------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.visual.image_transform(image.convert("RGB"))

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        param = next(self.visual.parameters())
        return [
            ImageEncoding(slot_embeds=e) for e in self.visual(pixels.to(param.device, param.dtype))
        ]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
        )
        return out.logits, out.past_key_values

    def model_info(self) -> dict[str, Any]:
        return {
            "model_id": self.pretrained,
            "revision": self.revision,
            "smoke": False,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights_sha256": weights_fingerprint(self.pretrained),
            "trust_remote_code": True,
            "dtype": str(self.dtype).replace("torch.", ""),
        }
