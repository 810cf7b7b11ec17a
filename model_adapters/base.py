"""What a model supplies to the engine: its template, its image preprocessing, its forward pass.

Everything else (grouping option requests per item, encoding each unique image once, scoring
all options from one cached prefix, batching, greedy generation, resume) is the engine's
job (`model_adapters.engine`), so a new model is one small subclass of `VisionLanguageAdapter`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image


@dataclass(frozen=True)
class ImageSlot:
    """Where image `index` of the item goes in the prompt."""

    index: int


Segment = str | ImageSlot


@dataclass
class ImageEncoding:
    """One image, encoded once and reused by every option of every item that shows it.

    `slot_embeds` (n_tokens, d_model) are spliced into the LM input at the image's slot
    (BLIP-2 query outputs, LLaVA patch tokens, RadFM's 32 tokens, or the embedding of a
    Flamingo `<image>` marker). `media` is for cross-attention models (Flamingo): per-image
    features the LM attends to; None for splice-only models.
    """

    slot_embeds: torch.Tensor
    media: torch.Tensor | None = None


class VisionLanguageAdapter(abc.ABC):
    """Base class for a model adapter. Subclasses set `name` and implement the abstract methods.

    Constructor keyword arguments come from `--model-args k=v,...` (strings, or parsed ints,
    floats and booleans). Adapters must be deterministic: eval mode, no sampling, no random
    crops.
    """

    name: ClassVar[str]
    display_name: ClassVar[str] = ""
    max_images: ClassVar[int | None] = None  # extra images are dropped, as the official code does
    add_bos: ClassVar[bool] = True  # prepend tokenizer.bos_token_id to the prompt

    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    # ----- what every adapter implements -------------------------------------------------
    @abc.abstractmethod
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        """The model's prompt around a task context: text pieces and image slots.

        The option text (the continuation) is appended to the last text piece, so the last
        segment must be text (possibly ""). This is where the official evaluation's template
        lives, with a comment citing its source.
        """

    @abc.abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's own deterministic preprocessing of one RGB image (C, H, W) or (C, D, H, W)."""

    @abc.abstractmethod
    def encode_images(self, pixels: torch.Tensor) -> list[ImageEncoding]:
        """Run the vision side on a batch of preprocessed images (one vision-encoder call)."""

    @abc.abstractmethod
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> LM input embeddings (B, T, d)."""

    @abc.abstractmethod
    def lm_forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Any = None,
        media: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        """One decoder pass: returns (logits (B, T, V), new past_key_values).

        `media` is (B, n_images, ...) for cross-attention models, stacked from
        `ImageEncoding.media`; splice-only models ignore it.
        """

    # ----- optional hooks with sensible defaults -----------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of a text piece without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def eos_token_ids(self) -> list[int]:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return [eos] if eos is not None else []

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def model_info(self) -> dict[str, Any]:
        """Identity for the run card: model_id, revision, weights_sha256, smoke, parameters."""
        return {}
