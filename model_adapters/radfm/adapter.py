"""RadFM for CheXbench.

What the user downloads (no code from either is run):
- `pytorch_model.bin` from the Hugging Face repository `chaoyi-wu/RadFM` (distributed zipped:
  unzip it);
- the `Quick_demo/Language_files/` folder of the GitHub repository `chaoyi-wu/RadFM`
  (LLaMA-13B `config.json` and the LLaMA tokenizer files).
Layout: `pretrained=DIR` with `DIR/pytorch_model.bin` and `DIR/Language_files/`
(`language_files=` overrides the latter). An optional `DIR/radfm_vision.json` overrides the
vision-side sizes (`RadFMVisionSpec`), for small variants such as the tests' tiny model.

Prompt (Stanford-AIMI/CheXagent evaluation_chexbench/models/radfm.py:32-36): BOS, `<image>` +
the image's 32 tokens + `</image>{question} {option}`, tokenised whole, one image (the path is
never split). `<image>`/`</image>` are special tokens the official code adds to the tokenizer
(src/radfm/__init__.py:16-24), ids 32000/32001, right after LLaMA's vocabulary; they are added
here the same way. The option is scored from the token holding its first character to the end
(radfm.py:50-55). Free text (:68-77): the same block + the prompt, 200 new tokens, greedy,
stopping on the language model config's EOS id, as the official `generate` does.

Preprocessing differs from the official code on purpose: RadFM's demo applies
`RandomResizedCrop([512, 512], scale=(0.8, 1.0), bicubic)`, a random 80-100% crop with random
aspect ratio, so two runs score differently. Here the WHOLE image is resized to 512x512
(bicubic, aspect ratio not kept), which is the crop's scale=1.0/ratio=image-aspect case, then
`ToTensor` scaling to [0, 1] (no mean/std normalisation, as released) and the slice repeated to
depth 4 (what the released nearest-neighbour interpolation from depth 1 to 4 does).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from harness.errors import UserError, WeightsMissing
from model_adapters.base import (
    GenerationSettings,
    ImageEncoding,
    ImageSlot,
    Segment,
    VisionLanguageAdapter,
)
from model_adapters.loading import check_unused, parse_dtype, resolve_device
from model_adapters.medflamingo.state_dict import load_tensors
from model_adapters.radfm.checkpoint import build_from_released
from model_adapters.radfm.modeling import RadFMVisionSpec
from model_adapters.spans import from_first_char, option_text

HUB_ID = "chaoyi-wu/RadFM"
WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.safetensors", "model.safetensors")
SPEC_FILE = "radfm_vision.json"
OFFICIAL = "Stanford-AIMI/CheXagent evaluation_chexbench/models/radfm.py"
IMAGE_MARKERS = ("<image>", "</image>")  # src/radfm/__init__.py:16, the figure tokens
DOWNLOAD_HELP = (
    f"RadFM needs two downloads: (1) the checkpoint from the Hugging Face repository {HUB_ID!r} "
    f"(`huggingface-cli download {HUB_ID} --local-dir models/radfm`, then unzip it so that "
    "models/radfm/pytorch_model.bin exists); (2) the folder Quick_demo/Language_files/ of the "
    "GitHub repository chaoyi-wu/RadFM (config.json, tokenizer.model, tokenizer_config.json, "
    "special_tokens_map.json) copied to models/radfm/Language_files/. Then pass "
    "--model-args pretrained=models/radfm (or language_files=DIR to point elsewhere)."
)


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsMissing(
        f"radfm: no {' / '.join(WEIGHT_FILES)} in {str(folder)!r}. {DOWNLOAD_HELP}"
    )


class RadFMAdapter(VisionLanguageAdapter):
    name = "radfm"
    display_name = "RadFM"
    max_images = 1  # OFFICIAL:23 passes the path unsplit: one image
    generation = GenerationSettings(
        max_new_tokens=200,
        source=f"{OFFICIAL}:68-77; src/radfm/Model/RadFM/multimodality_model.py:75-80",
        deviations=(
            "top_k=50 is passed without do_sample, so the official decoding is greedy "
            "too; no deviation in decoding",
        ),
    )

    def __init__(
        self,
        pretrained: str = "models/radfm",
        path: str | None = None,
        language_files: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        device_map: str | None = None,
        **unused: Any,
    ):
        check_unused("radfm", unused)
        from transformers import AutoTokenizer, LlamaConfig

        self.pretrained = str(path or pretrained)
        folder = Path(self.pretrained)
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        self.weights_path = _weights_file(folder)
        lang = Path(language_files) if language_files else folder / "Language_files"
        if not (lang / "config.json").is_file():
            raise WeightsMissing(
                f"radfm: no LLaMA config/tokenizer folder at {str(lang)!r}. {DOWNLOAD_HELP}"
            )
        spec_path = folder / SPEC_FILE
        self.spec = (
            RadFMVisionSpec(**json.loads(spec_path.read_text()))
            if spec_path.is_file()
            else RadFMVisionSpec()
        )
        tokenizer = AutoTokenizer.from_pretrained(str(lang))
        # The released tokenizer_config leaves bos/eos empty; the official demo sets 1 and 2.
        if not tokenizer.bos_token:
            tokenizer.bos_token = "<s>"
        if not tokenizer.eos_token:
            tokenizer.eos_token = "</s>"
        tokenizer.add_special_tokens({"additional_special_tokens": list(IMAGE_MARKERS)})
        self.tokenizer = tokenizer
        model = build_from_released(
            load_tensors(str(self.weights_path)),
            LlamaConfig.from_pretrained(str(lang)),
            self.spec,
            origin=str(self.weights_path),
        )
        marker_ids = tokenizer.convert_tokens_to_ids(list(IMAGE_MARKERS))
        if marker_ids != [model.text_vocab, model.text_vocab + 1]:
            raise UserError(
                f"radfm: the tokenizer in {lang} gives <image>/</image> ids "
                f"{marker_ids}, not {model.text_vocab}/{model.text_vocab + 1} (right "
                "after the language model's vocabulary) as the released model needs"
            )
        model = model.to(self.dtype).eval()
        if device_map == "auto":
            from accelerate import dispatch_model, infer_auto_device_map

            placement = infer_auto_device_map(
                model,
                dtype=self.dtype,
                no_split_module_classes=["LlamaDecoderLayer", "ViT3D", "PerceiverResampler"],
            )
            model = dispatch_model(model, device_map=placement)
            self.device = next(model.vision_encoder.parameters()).device
        elif device_map not in (None, ""):
            raise ValueError("radfm: device_map must be 'auto' or unset")
        else:
            model = model.to(self.device)
        self.model = model

    # ----- the adapter interface -------------------------------------------------------------
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        # OFFICIAL:32-36 "<image>" + "<image0>...<image31>" + "</image>" + f"{question} {option}",
        # tokenised whole with BOS (Language_files add_bos_token); the 32 image tokens pick the
        # 32 vision embeddings in place (src/radfm/Model/RadFM/my_embedding_layer.py:122-135).
        if n_images == 0:  # no official text-only call (:69 opens an image): the prompt alone
            return [*self.bos(), context]
        return [*self.bos(), "<image>", ImageSlot(0), f"</image>{context}"]

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        # OFFICIAL:50-55: from char_to_token(text.rfind(option)) to the end of the row.
        return from_first_char(self.tokenizer, last_piece + continuation, option_text(continuation))

    @property
    def eos_token_ids(self) -> list[int]:
        # The official generate (multimodality_model.py:79) stops on the language model config's
        # eos_token_id; the released Language_files/config.json says 1, not </s> (2).
        eos = self.model.language_model.config.eos_token_id
        return [eos] if eos is not None else []

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        size = self.spec.image_size
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        chw = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return chw.unsqueeze(-1).repeat(1, 1, 1, self.spec.input_depth)

    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        tokens = self.model.encode_images(pixels.to(self.device, self.dtype))
        return [ImageEncoding(slot_embeds=t) for t in tokens]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

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

    def model_info(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        with open(self.weights_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
        return {
            "model_id": self.pretrained,
            "weights_sha256": digest.hexdigest(),
            "smoke": False,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "preprocessing": "deterministic resize (not the official RandomResizedCrop)",
        }
