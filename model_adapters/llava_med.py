"""LLaVA-Med on transformers' `LlavaForConditionalGeneration`: two releases, two adapters.

- `llava_med` is **LLaVA-Med v0**, the paper's row and the model the official CheXbench wrapper
  loads (Stanford-AIMI/CheXagent evaluation_chexbench/models/llavamed.py, `LlavaLlamaForCausalLM`:
  LLaMA-7B + delta, CLIP ViT-L/14 at 224, 256 patch features from layer -2, `<im_start>`/
  `<im_end>` around them). Multiple choice has no chat template: `{question}\\n<im_start>` +
  patches + `<im_end> {option}`, BOS first, the option's ids `tok(option)[1:]` at the row's end.
- `llava_med_v15` is **LLaVA-Med v1.5** (`microsoft/llava-med-v1.5-mistral-7b`), which no
  official CheXbench code evaluates: its own `mistral_instruct` template `[INST] <image>\\n{q}
  [/INST]`, image before the question (LLaVA-Med v1.5 llava/eval/model_vqa.py:48-53).

Their results are different models' results: the names, display names and the converted
folder's recorded variant keep them apart (`chexbench convert llava-med` writes it; each adapter
refuses the other's folder).
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
from model_adapters.converters.llava_med import ADAPTER_FOR, V0, V0_IMAGE_TOKENS, V15
from model_adapters.loading import (
    check_unused,
    from_pretrained_kwargs,
    load_or_explain,
    parse_dtype,
    place_model,
    resolve_device,
    weights_fingerprint,
)
from model_adapters.reference import option_token_count, score_last
from model_adapters.spans import option_text, trailing_standalone

OFFICIAL = "Stanford-AIMI/CheXagent evaluation_chexbench/models/llavamed.py"
CONVERT_HINT = {
    V0: (
        "LLaVA-Med v0 (the paper's) is released as delta weights on LLaMA-7B: apply them with "
        "LLaVA-Med's own `python3 -m llava.model.apply_delta` (microsoft/LLaVA-Med at b9a98a7; "
        "docs/adapters/llava_med.md), then `chexbench convert llava-med SRC models/llava-med-v0 "
        "--vision-tower <openai/clip-vit-large-patch14 folder>` and pass "
        "pretrained=models/llava-med-v0"
    ),
    V15: (
        "Download microsoft/llava-med-v1.5-mistral-7b (`huggingface-cli download "
        "microsoft/llava-med-v1.5-mistral-7b --local-dir models/llava-med-v1.5-src`), run "
        "`chexbench convert llava-med models/llava-med-v1.5-src models/llava-med-v1.5`, then "
        "pass pretrained=models/llava-med-v1.5"
    ),
}
# OFFICIAL:134-136, the generate() conversation prefix, verbatim.
CHAT_PREFIX = (
    "A chat between a curious human and an artificial intelligence assistant. The "
    "assistant gives helpful, detailed, and polite answers to the human's questions. "
    "###Human: "
)


class _LlavaMed(VisionLanguageAdapter):
    """Loading, vision and forward shared by both releases; the prompts are each variant's."""

    variant: ClassVar[str]
    max_images = 1  # OFFICIAL:73 asserts one image

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
        from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

        check_unused(self.name, unused)
        if trust_remote_code:
            raise UserError(
                f"{self.name}: runs on transformers' own Llava classes; "
                "trust_remote_code is never needed or used"
            )
        if not pretrained:
            raise UserError(
                f"{self.name}: pretrained=PATH (a converted folder) is required. "
                f"{CONVERT_HINT[self.variant]}"
            )
        self.pretrained, self.revision = str(pretrained), revision
        self.load_in_8bit = bool(load_in_8bit)
        requested = resolve_device(device)
        self.dtype = parse_dtype(dtype, requested)
        kwargs = from_pretrained_kwargs(
            self.name, self.dtype, requested, self.load_in_8bit, device_map, revision
        )
        what, hub = "the converted folder", f"(converted) LLaVA-Med {self.variant}"
        self.model = load_or_explain(
            LlavaForConditionalGeneration, self.pretrained, self.name, hub, what, **kwargs
        )
        self._check_variant()
        self.tokenizer = load_or_explain(AutoTokenizer, self.pretrained, self.name, hub, what)
        self.image_processor = load_or_explain(
            AutoImageProcessor, self.pretrained, self.name, hub, what
        )
        self.device = place_model(self.model, requested, device_map, self.load_in_8bit)
        self.im_start_end = bool(getattr(self.model.config, "chexbench_mm_use_im_start_end", False))

    def _check_variant(self) -> None:
        cfg = self.model.config
        if getattr(cfg, "chexbench_arch", None) != "llava_med":
            raise UserError(
                f"{self.name}: {self.pretrained} was not written by `chexbench "
                f"convert llava-med`. {CONVERT_HINT[self.variant]}"
            )
        found = getattr(cfg, "chexbench_llava_med_variant", None)
        if found is None:
            raise UserError(
                f"{self.name}: {self.pretrained} was converted before the LLaVA-Med "
                "variant was recorded; run `chexbench convert llava-med` on its "
                "source again"
            )
        if found != self.variant:
            raise UserError(
                f"{self.name} is LLaVA-Med {self.variant}, but {self.pretrained} holds "
                f"LLaVA-Med {found}: use --model {ADAPTER_FOR[found]}"
            )

    # ----- vision and forward ------------------------------------------------------------------
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

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        out = self.model.model.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
        )
        return self.model.lm_head(out.last_hidden_state), out.past_key_values

    def _reference(
        self, pieces: tuple[list[int], list[int]], n_option: int, images: list[Image.Image]
    ) -> tuple[float, bool, int]:
        """One forward of LlavaForConditionalGeneration on ids `pieces[0]` + the image's features
        (the model's own `get_image_features`, its configured layer and strategy) + `pieces[1]`,
        from the image processor's pixels: none of this adapter's vision or forward code."""
        cfg = self.model.config
        pixels = self.image_processor(images=images[:1], return_tensors="pt").pixel_values
        with torch.inference_mode():
            feats = self.model.get_image_features(
                pixel_values=pixels.to(self.device, self.dtype),
                vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            )[0]
            embed = self.model.get_input_embeddings()
            before, after = (torch.tensor(p, device=self.device) for p in pieces)
            row = torch.cat([embed(before), feats.to(embed.weight.dtype), embed(after)])
            logits = self.model(inputs_embeds=row[None]).logits[0]
        return score_last(
            logits, torch.cat([before, before.new_zeros(len(feats)), after]), n_option
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
            "llava_med_variant": self.variant,
        }


class LlavaMedAdapter(_LlavaMed):
    """LLaVA-Med v0, as the official CheXbench wrapper runs it."""

    name = "llava_med"
    display_name = "LLaVA-Med"  # the paper's column name: this is the paper's model
    variant = V0
    generation = GenerationSettings(
        max_new_tokens=1024,
        source=f"{OFFICIAL}:115-152",
        deviations=("official samples (do_sample=True, temperature=0.7, unseeded): greedy here",),
        stop_strings=("###",),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # OFFICIAL:52-54 adds the image tokens (present already in a v0 release: no new ids).
        wanted = list(V0_IMAGE_TOKENS if self.im_start_end else V0_IMAGE_TOKENS[:1])
        self.tokenizer.add_tokens(wanted, special_tokens=True)
        rows = self.model.get_input_embeddings().num_embeddings
        ids = self.tokenizer.convert_tokens_to_ids(wanted)
        if max(ids) >= rows:
            raise UserError(
                f"llava_med: {wanted} get ids {ids}, beyond the model's {rows} "
                f"embedding rows: not a LLaVA-Med v0 tokenizer. {CONVERT_HINT[V0]}"
            )

    def _image_block(self) -> tuple[str, str]:
        """Text around the patch features: `<im_start>`/`<im_end>` when v0 used them."""
        return ("<im_start>", "<im_end>") if self.im_start_end else ("", "")

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL:81-88 qs = question + '\n' + <im_start> + <im_patch>*256 + <im_end>, then
        # f"{qs} {option}", tokenised whole with the tokenizer's BOS (:88). The option text
        # follows `<im_end>` in the last piece, so it tokenises as in the whole string.
        if n_images == 0:
            return [*self.bos(), context]
        start, end = self._image_block()
        return [*self.bos(), f"{context}\n{start}", ImageSlot(0), end]

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL:98-102: tok(f"{ans}").input_ids[1:] at the end of the row. After `<im_end>` a
        # legacy LLaMA tokenizer writes " no" as "▁", "▁no": the "▁" stays unscored context.
        whole = self.tokenize(last_piece + continuation)
        return trailing_standalone(whole, self.tokenize(option_text(continuation)))

    def reference_forward(
        self, context: str, continuation: str, images: list[Image.Image]
    ) -> tuple[float, bool, int] | None:
        """OFFICIAL:81-102: f"{qs} {o}" tokenised whole with BOS, the patch rows replaced by the
        image's features (llava.py:248-250), the span tok(o)[1:] at the row's end."""
        if not images:
            return None
        start, end = self._image_block()
        row = self.tokenizer(f"{context}\n{start}<im_patch>{end}{continuation}").input_ids
        patch = row.index(self.tokenizer.convert_tokens_to_ids("<im_patch>"))
        n = len(self.tokenizer(option_text(continuation)).input_ids) - 1
        return self._reference((row[:patch], row[patch + 1 :]), n, images)

    def generation_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL:139-143: prefix + prompt + '\n' + <im_start> + patches + <im_end> +
        # "### Assistant: " (without <im_start>/<im_end> the official string has no assistant
        # cue at all; reproduced as is).
        start, end = self._image_block()
        cue = "### Assistant: " if self.im_start_end else ""
        if n_images == 0:  # no official text-only call: the same turn without the image block
            return [*self.bos(), f"{CHAT_PREFIX}{context}\n{cue}"]
        return [*self.bos(), f"{CHAT_PREFIX}{context}\n{start}", ImageSlot(0), f"{end}{cue}"]

    def postprocess_generation(self, text: str) -> str:
        # OFFICIAL:150-152 (the engine decodes the new tokens only, so the split is a no-op
        # unless the answer repeats the cue).
        return text.split(" ### Assistant: ")[-1].replace("###", "").strip()


class LlavaMedV15Adapter(_LlavaMed):
    """LLaVA-Med v1.5 (Mistral-7B), in its own chat template. Not the paper's LLaVA-Med."""

    name = "llava_med_v15"
    display_name = "LLaVA-Med v1.5 (Mistral)"
    variant = V15
    generation = GenerationSettings(
        max_new_tokens=1024,
        source="microsoft/LLaVA-Med 821e1c7 (v1.5) llava/eval/model_vqa.py:65-81, README.md:146 "
        "(temperature 0: greedy)",
        deviations=(
            "no official CheXbench code evaluates v1.5: LLaVA-Med v1.5's own VQA "
            "evaluation settings",
        ),
    )

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # LLaVA-Med v1.5 conv "mistral_instruct" (llava/conversation.py:407-416) renders one
        # user turn as "[INST] {qs} [/INST]"; model_vqa.py:48-53 puts the image first,
        # qs = "<image>\n" + question; tokenizer_image_token (mm_utils.py:49-68) tokenises the
        # text around <image> piece by piece, BOS first. The answer follows "[/INST]".
        if n_images == 0:
            return [*self.bos(), f"[INST] {context} [/INST]"]
        start, end = ("<im_start>", "<im_end>") if self.im_start_end else ("", "")
        return [*self.bos(), f"[INST] {start}", ImageSlot(0), f"{end}\n{context} [/INST]"]

    def reference_forward(
        self, context: str, continuation: str, images: list[Image.Image]
    ) -> tuple[float, bool, int] | None:
        """tokenizer_image_token (mm_utils.py:49-68) on "[INST] <image>\n{q} [/INST]" + the
        option: each chunk around <image> tokenised with BOS, the later chunks' BOS dropped;
        the option's tokens are the tail past the prompt's own."""
        if not images:
            return None
        start, end = ("<im_start>", "<im_end>") if self.im_start_end else ("", "")
        tail = f"{end}\n{context} [/INST]"
        n = option_token_count(self.tokenizer, tail, continuation)
        head = self.tokenizer(f"[INST] {start}").input_ids
        return self._reference((head, self.tokenizer(tail + continuation).input_ids[1:]), n, images)

    def postprocess_generation(self, text: str) -> str:
        return text.strip()  # model_vqa.py:101-106
