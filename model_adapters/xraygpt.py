"""XrayGPT: MiniGPT-4 (EVA ViT-g + BLIP-2 Q-Former, 32 queries, one linear layer, Vicuna).

Runs on transformers' `Blip2ForConditionalGeneration` with a LLaMA language model: the released
weights are converted once with `chexbench convert xraygpt SRC DST`
(model_adapters/converters/xraygpt.py), and `pretrained=DST` loads them here.

Official evaluation (Stanford-AIMI/CheXagent, evaluation_chexbench/models/xraygpt.py): prompt
`<Img><ImageHere></Img> {question} {option}`, split at `<ImageHere>`, each piece tokenised on
its own with BOS only on the first, the 32 projected query embeddings spliced in between; the
option's ids are `tok(option)[1:]` at the end of the last piece; images resized to 224x224
(Blip2ImageEvalProcessor), one image. Free text: the wrapper's Doctor/Assistant turn, 300 new
tokens, stop at "###", the "impression" cut (sampling there, greedy here).
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import UserError, WeightsMissing
from model_adapters.base import GenerationSettings, ImageSlot, Segment
from model_adapters.blip2 import OFFICIAL, Blip2Adapter
from model_adapters.spans import option_text, trailing_standalone

# OFFICIAL/xraygpt.py:128-129 (the system text before the Doctor's turn), verbatim.
GENERATION_PREFIX = (
    "You are an experienced Doctor, give the following medical scan: <Img>ImageContent</Img>. "
    "You will be able to see the medical scan once I provide it to you. Please answer my "
    "questions. "
)

CONVERT_HINT = (
    "XrayGPT has no Hugging Face repository in transformers' layout. Download the release "
    "pieces (eva_vit_g.pth, blip2_pretrained_flant5xxl.pth, xraygpt_pretrained1.pth and the "
    "Vicuna_Radiology_fp16 folder; see the mbzuai-oryx/XrayGPT README) into one folder SRC, run "
    "`chexbench convert xraygpt SRC models/xraygpt`, then pass pretrained=models/xraygpt"
)


class XrayGPTAdapter(Blip2Adapter):
    name = "xraygpt"
    display_name = "XrayGPT"
    hub_id = "(converted) XrayGPT"
    what_to_download = "the converted folder"
    generation = GenerationSettings(
        max_new_tokens=300,
        source=f"{OFFICIAL}/xraygpt.py:112-186",
        deviations=(
            "official samples (do_sample=True, top_p=0.9, temperature=1.0, unseeded): greedy here",
            "official stops on the token ids of '###' ([835] or [2277, 29937]); here on the text "
            "'###', cut before it as the official split('###')[0] does",
            "official decode keeps special tokens (an EOS appears as '</s>'); here they are "
            "skipped",
            "official keeps only the last 1700 prompt embeddings (max_length=2000); CheXbench "
            "prompts are far shorter, so nothing is cut here",
        ),
        stop_strings=("###",),
    )

    def reference_forward(self, context: str, continuation: str, images: list) -> None:
        """None: XrayGPT's layout (`<Img>` + query embeddings + `</Img>` inside its own
        template) is not what `Blip2ForConditionalGeneration`'s forward builds, so BLIP-2's
        reference does not apply and check-adapter skips that check."""
        return None

    def __init__(self, pretrained: str | None = None, **kwargs: Any):
        if not pretrained:
            raise UserError(f"xraygpt: pretrained=PATH is required. {CONVERT_HINT}")
        super().__init__(pretrained=pretrained, **kwargs)
        if getattr(self.model.config, "chexbench_arch", None) != "xraygpt":
            raise UserError(
                f"xraygpt: {pretrained} is not a folder written by "
                f"`chexbench convert xraygpt`. {CONVERT_HINT}"
            )
        # MiniGPT-4's ln_vision is a default LayerNorm (eps 1e-5), while transformers gives the
        # vision post-layernorm the blocks' eps (1e-6); restore the original.
        self.model.vision_model.post_layernorm.eps = float(self.model.config.xraygpt_ln_vision_eps)
        self._check_bos()

    def _load(self, kwargs: dict[str, Any]):
        try:
            return super()._load(kwargs)
        except FileNotFoundError as exc:
            raise WeightsMissing(
                f"xraygpt: cannot load {self.pretrained!r}. {CONVERT_HINT}"
            ) from exc

    def _check_bos(self) -> None:
        """The official input starts with BOS (OFFICIAL/xraygpt.py:56-65); `bos()` returns
        nothing for a tokenizer without one, which would silently drop it."""
        if self.tokenizer.bos_token_id is None:
            raise UserError(
                f"xraygpt: the tokenizer in {self.pretrained} has no BOS token, which XrayGPT's "
                f"input starts with. {CONVERT_HINT}"
            )

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL/xraygpt.py:56-65: '<Img><ImageHere></Img> ' + f"{question} {option}", split
        # at <ImageHere>, each piece tokenised alone, BOS on the first only; the image
        # embeddings between the pieces (:79-81).
        if n_images == 0:
            return [*self.bos(), context]
        return [*self.bos(), "<Img>", ImageSlot(0), f"</Img> {context}"]

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL/xraygpt.py:96-100: tok(f"{ans}").input_ids[1:], asserted to end the last piece.
        whole = self.tokenize(last_piece + continuation)
        return trailing_standalone(whole, self.tokenize(option_text(continuation)))

    def generation_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL/xraygpt.py:135-142: prefix + "### Doctor: " + '<Img><ImageHere></Img> ' +
        # prompt + " " + "### Assistant: ", split at <ImageHere>, BOS on the first piece only.
        if n_images == 0:  # no official text-only call: the same turn without the image
            return [*self.bos(), f"{GENERATION_PREFIX}### Doctor: {context} ### Assistant: "]
        return [
            *self.bos(),
            f"{GENERATION_PREFIX}### Doctor: <Img>",
            ImageSlot(0),
            f"</Img> {context} ### Assistant: ",
        ]

    def postprocess_generation(self, text: str) -> str:
        # OFFICIAL/xraygpt.py:175-185: cut at '###', keep what follows 'Doctor:', then keep the
        # sentences before the first one that mentions "impression", ending with a period.
        text = text.split("###")[0].split("Doctor:")[-1].strip()
        findings = []
        for sentence in re.sub(r"\s+", " ", text).split(". "):
            if "impression" in sentence.lower():
                break
            findings.append(sentence)
        text = ". ".join(findings)
        return text + "." if text and not text.endswith(".") else text
