"""RadFM for CheXbench.

What the user downloads (no code from either is run):
- `pytorch_model.bin` from the Hugging Face repository `chaoyi-wu/RadFM` (distributed zipped:
  unzip it);
- the `Quick_demo/Language_files/` folder of the GitHub repository `chaoyi-wu/RadFM`
  (LLaMA-13B `config.json` and the LLaMA tokenizer files).
Layout: `pretrained=DIR` with `DIR/pytorch_model.bin` and `DIR/Language_files/`
(`language_files=` overrides the latter). An optional `DIR/radfm_vision.json` overrides the
vision-side sizes (`RadFMVisionSpec`), for small variants such as the tests' tiny model.

Prompt (official CheXbench evaluation, research notes "Models"): `<image>` + the image's 32
tokens + `</image>{question} {option}`, one block per image, images first. The original
tokenizer splits `<image>`/`</image>` out as ids 32000/32001 and encodes the text between them
on its own; `tokenize` below does the same without needing those tokens in the tokenizer.

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
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model_adapters.base import ImageEncoding, ImageSlot, Segment, VisionLanguageAdapter
from model_adapters.loading import parse_dtype, resolve_device
from model_adapters.medflamingo.state_dict import load_tensors
from model_adapters.radfm.checkpoint import build_from_released
from model_adapters.radfm.modeling import RadFMVisionSpec

HUB_ID = "chaoyi-wu/RadFM"
WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.safetensors", "model.safetensors")
SPEC_FILE = "radfm_vision.json"
_MARKERS = re.compile(r"(<image>|</image>)")
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
    raise FileNotFoundError(f"radfm: no {' / '.join(WEIGHT_FILES)} in {str(folder)!r}. "
                            f"{DOWNLOAD_HELP}")


class RadFMAdapter(VisionLanguageAdapter):
    name = "radfm"
    display_name = "RadFM"

    def __init__(self, pretrained: str = "models/radfm", path: str | None = None,
                 language_files: str | None = None, dtype: str = "auto", device: str = "auto",
                 device_map: str | None = None, **unused: Any):
        if unused:
            raise TypeError(f"radfm: unknown model args {sorted(unused)}")
        from transformers import AutoTokenizer, LlamaConfig

        self.pretrained = str(path or pretrained)
        folder = Path(self.pretrained)
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        self.weights_path = _weights_file(folder)
        lang = Path(language_files) if language_files else folder / "Language_files"
        if not (lang / "config.json").is_file():
            raise FileNotFoundError(f"radfm: no LLaMA config/tokenizer folder at {str(lang)!r}. "
                                    f"{DOWNLOAD_HELP}")
        spec_path = folder / SPEC_FILE
        self.spec = (RadFMVisionSpec(**json.loads(spec_path.read_text()))
                     if spec_path.is_file() else RadFMVisionSpec())
        tokenizer = AutoTokenizer.from_pretrained(str(lang))
        # The released tokenizer_config leaves bos/eos empty; the official demo sets 1 and 2.
        if not tokenizer.bos_token:
            tokenizer.bos_token = "<s>"
        if not tokenizer.eos_token:
            tokenizer.eos_token = "</s>"
        self.tokenizer = tokenizer
        model = build_from_released(load_tensors(str(self.weights_path)),
                                    LlamaConfig.from_pretrained(str(lang)), self.spec,
                                    origin=str(self.weights_path))
        model = model.to(self.dtype).eval()
        if device_map == "auto":
            from accelerate import dispatch_model, infer_auto_device_map

            placement = infer_auto_device_map(model, dtype=self.dtype, no_split_module_classes=[
                "LlamaDecoderLayer", "ViT3D", "PerceiverResampler"])
            model = dispatch_model(model, device_map=placement)
            self.device = next(model.vision_encoder.parameters()).device
        elif device_map not in (None, ""):
            raise ValueError("radfm: device_map must be 'auto' or unset")
        else:
            model = model.to(self.device)
        self.model = model

    # ----- the adapter interface -------------------------------------------------------------
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        segments: list[Segment] = [*self.bos()]
        for i in range(n_images):
            segments += ["<image>" if i == 0 else "</image><image>", ImageSlot(i)]
        segments.append(f"</image>{context}" if n_images else context)
        return segments

    def tokenize(self, text: str) -> list[int]:
        vocab = self.model.text_vocab
        ids: list[int] = []
        for piece in _MARKERS.split(text):
            if piece == "<image>":
                ids.append(vocab)
            elif piece == "</image>":
                ids.append(vocab + 1)
            elif piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

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

    def lm_forward(self, inputs_embeds, attention_mask, position_ids, past_key_values=None,
                   media=None):
        out = self.model.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                        position_ids=position_ids,
                                        past_key_values=past_key_values, use_cache=True)
        return out.logits, out.past_key_values

    def model_info(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        with open(self.weights_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
        return {"model_id": self.pretrained, "weights_sha256": digest.hexdigest(),
                "smoke": False, "parameters": sum(p.numel() for p in self.model.parameters()),
                "preprocessing": "deterministic resize (not the official RandomResizedCrop)"}
