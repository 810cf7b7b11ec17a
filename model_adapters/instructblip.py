"""InstructBLIP (`Salesforce/instructblip-vicuna-7b`) on `InstructBlipForConditionalGeneration`.

Unlike BLIP-2, InstructBLIP's Q-Former reads the instruction text beside its query tokens, so
an image's encoding depends on the text it is asked about: `image_text(context)` says which
text, and `encode_images(pixels, texts)` takes one text per image. The engine must key its
image cache on (image, text) for this adapter.

Official evaluation (Stanford-AIMI/CheXagent, evaluation_chexbench/models/instructblip.py):
8-bit weights, one image, LLM prompt `{question} {option}` after the queries, with the
tokenizer's BOS first (the hub tokenizer's `bos_token` is `</s>`, id 2); the option's ids are
`tok(option)[1:]`, found at the end of the row. The official code hands the processor the whole
`{question} {option}` string, so its Q-Former reads the option being scored as well
(`image_text_reads_option`): the image embeddings differ per option, and the engine scores each
option from its own prefix, as the official code does.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from model_adapters.base import GenerationSettings, ImageEncoding
from model_adapters.blip2 import OFFICIAL, Blip2Adapter
from model_adapters.loading import load_or_explain
from model_adapters.reference import token_reference
from model_adapters.spans import option_text, trailing_standalone


class InstructBlipAdapter(Blip2Adapter):
    name = "instructblip"
    display_name = "InstructBLIP"
    hub_id = "Salesforce/instructblip-vicuna-7b"
    what_to_download = (
        "config.json, the *.safetensors shards, the tokenizer files, the "
        "qformer_tokenizer/ folder and preprocessor_config.json"
    )
    generation = GenerationSettings(
        max_new_tokens=256,
        source=f"none ({OFFICIAL}/instructblip.py has no generate())",
        deviations=("no official generation protocol: the multiple-choice template, greedy",),
    )

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL/instructblip.py:45-49: tok(f"{ans}").input_ids[1:] (SentencePiece adds the
        # "▁" itself), asserted to be the row's end.
        whole = self.tokenize(last_piece + continuation)
        return trailing_standalone(whole, self.tokenize(option_text(continuation)))

    def _load(self, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        from transformers import (
            AutoImageProcessor,
            AutoTokenizer,
            InstructBlipForConditionalGeneration,
        )

        model = load_or_explain(
            InstructBlipForConditionalGeneration,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            **kwargs,
        )
        extra = {"revision": self.revision} if self.revision else {}
        tokenizer = load_or_explain(
            AutoTokenizer, self.pretrained, self.name, self.hub_id, self.what_to_download, **extra
        )
        self.qformer_tokenizer = load_or_explain(
            AutoTokenizer,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            subfolder="qformer_tokenizer",
            **extra,
        )
        processor = load_or_explain(
            AutoImageProcessor,
            self.pretrained,
            self.name,
            self.hub_id,
            self.what_to_download,
            **extra,
        )
        return model, tokenizer, processor

    image_text_reads_option = True

    def reference_forward(
        self, context: str, continuation: str, images: list[Image.Image]
    ) -> tuple[float, bool, int] | None:
        """As BLIP-2's, with OFFICIAL/instructblip.py's span tok(o)[1:] and the Q-Former reading
        `{q} {o}` (the processor's qformer_input_ids)."""
        image_token = getattr(self.model.config, "image_token_index", None)
        if image_token is None or not images:
            return None
        row = self.tokenizer(context + continuation).input_ids
        n = len(self.tokenizer(option_text(continuation)).input_ids) - 1
        pixels = self.image_processor(images=images[:1], return_tensors="pt").pixel_values
        q = self.qformer_tokenizer(context + continuation, return_tensors="pt")
        return token_reference(
            self.model,
            [image_token] * self.model.config.num_query_tokens + row,
            n,
            pixel_values=pixels.to(self.dtype),
            qformer_input_ids=q.input_ids,
            qformer_attention_mask=q.attention_mask,
        )

    def image_text(self, text: str) -> str:
        """What the Q-Former reads beside each image: the prompt as the LM sees it, the
        option included (`{question} {option}`, evaluation_chexbench/models/instructblip.py)."""
        return text

    def encode_images(
        self, pixels: torch.Tensor, texts: list[str] | None = None
    ) -> list[ImageEncoding]:
        if texts is None:
            raise TypeError(
                "instructblip: the Q-Former reads the instruction text, so encode_images needs "
                "texts=[one per image] (the engine passes adapter.image_text(context))"
            )
        if len(texts) != pixels.shape[0]:
            raise ValueError(f"instructblip: {pixels.shape[0]} images but {len(texts)} texts")
        feats = self.vision_features(pixels)
        img_mask = torch.ones(feats.shape[:-1], dtype=torch.long, device=feats.device)
        enc = self.qformer_tokenizer(texts, padding=True, return_tensors="pt").to(feats.device)
        queries = self.model.query_tokens.expand(feats.shape[0], -1, -1)
        n_query = queries.shape[1]
        query_mask = torch.ones(queries.shape[:-1], dtype=torch.long, device=feats.device)
        out = self.model.qformer(
            input_ids=enc["input_ids"],
            attention_mask=torch.cat([query_mask, enc["attention_mask"]], 1),
            query_embeds=queries,
            encoder_hidden_states=feats,
            encoder_attention_mask=img_mask,
            return_dict=True,
        ).last_hidden_state[:, :n_query]
        return [ImageEncoding(slot_embeds=p) for p in self.model.language_projection(out)]
