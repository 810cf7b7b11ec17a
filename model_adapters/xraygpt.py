"""XrayGPT: MiniGPT-4 (EVA ViT-g + BLIP-2 Q-Former, 32 queries, one linear layer, Vicuna).

Runs on transformers' `Blip2ForConditionalGeneration` with a LLaMA language model: the released
weights are converted once with `chexbench convert xraygpt SRC DST`
(model_adapters/converters/xraygpt.py), and `pretrained=DST` loads them here.

Official evaluation (Stanford-AIMI/CheXagent, evaluation_chexbench/models/xraygpt.py): prompt
`<Img><ImageHere></Img> {question} {option}`, split at `<ImageHere>`, BOS only on the first
piece, the 32 projected query embeddings spliced in between; images resized to 224x224
(Blip2ImageEvalProcessor), one image.
"""

from __future__ import annotations

from typing import Any

from harness.errors import UserError
from model_adapters.base import ImageSlot, Segment
from model_adapters.blip2 import Blip2Adapter

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

    def __init__(self, pretrained: str | None = None, **kwargs: Any):
        if not pretrained:
            raise UserError(f"xraygpt: pretrained=PATH is required. {CONVERT_HINT}")
        super().__init__(pretrained=pretrained, **kwargs)
        if getattr(self.model.config, "chexbench_arch", None) != "xraygpt":
            raise UserError(f"xraygpt: {pretrained} is not a folder written by "
                            f"`chexbench convert xraygpt`. {CONVERT_HINT}")
        # MiniGPT-4's ln_vision is a default LayerNorm (eps 1e-5), while transformers gives the
        # vision post-layernorm the blocks' eps (1e-6); restore the original.
        self.model.vision_model.post_layernorm.eps = float(self.model.config.xraygpt_ln_vision_eps)

    def _load(self, kwargs: dict[str, Any]):
        try:
            return super()._load(kwargs)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"xraygpt: cannot load {self.pretrained!r}. {CONVERT_HINT}") \
                from exc

    def _check_bos(self) -> None:
        if self.tokenizer.bos_token_id is None:
            raise ValueError(f"xraygpt: the tokenizer in {self.pretrained} has no BOS token")

    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # Official template (evaluation_chexbench/models/xraygpt.py):
        # '<Img><ImageHere></Img> ' + f"{question} {option}", image embeddings at <ImageHere>.
        if n_images == 0:
            return [*self.bos(), context]
        return [*self.bos(), "<Img>", ImageSlot(0), f"</Img> {context}"]
