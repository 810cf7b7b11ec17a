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


@dataclass(frozen=True)
class TokenIds:
    """Token ids placed verbatim where the model's own code puts them (BOS, EOS, markers).

    Special tokens are part of a model's released layout, not an engine default: CheXagent-8b
    puts BOS after its image queries, BLIP-2 after its queries too, XrayGPT before `<Img>`.
    """

    ids: tuple[int, ...]


Segment = str | ImageSlot | TokenIds


@dataclass(frozen=True)
class GenerationSettings:
    """How a model writes free text (findings generation and summarization), per its official
    `generate()` wrapper. Decoding is always greedy here (determinism); where the official code
    samples, `deviations` says so and the run card records it."""

    max_new_tokens: int = 256
    source: str = ""  # file:line of the official value
    deviations: tuple[str, ...] = ()
    # Text that ends a generation where the official code stops on it (LLaVA-Med's "###"
    # keyword, XrayGPT's "###" token ids); the text is cut before it. EOS ids: `eos_token_ids`.
    stop_strings: tuple[str, ...] = ()


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
    # How many of an item's images the model is shown (the first ones). None: all of them.
    max_images: ClassVar[int | None] = None
    generation: ClassVar[GenerationSettings] = GenerationSettings()
    # True when the official code feeds the vision side the whole "question option" text
    # (InstructBLIP): the engine then gives `image_text` the context plus the option.
    image_text_reads_option: ClassVar[bool] = False

    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    # ----- what every adapter implements -------------------------------------------------
    @abc.abstractmethod
    def prompt_segments(self, context: str, n_images: int) -> list[Segment]:
        """The model's prompt around a task context: text pieces and image slots.

        The option text (the continuation) is appended to the last text piece, so the last
        segment must be text (possibly ""). Special tokens (BOS) are `TokenIds` segments placed
        exactly where the model's own code places them: the engine adds nothing. This is where
        the official evaluation's template lives, with a comment citing its source.
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
    def generation_segments(self, context: str, n_images: int) -> list[Segment]:
        """The prompt around a free-text request (findings generation, summarization, and
        generation-mode multiple choice): the official `generate()` wrapper's conversation
        template. Defaults to the multiple-choice template."""
        return self.prompt_segments(context, n_images)

    def postprocess_generation(self, text: str) -> str:
        """The official `generate()` wrapper's clean-up of the decoded text (findings generation
        and summarization), applied after the stop strings are cut. Identity by default."""
        return text

    def split_option(
        self, last_piece: str, continuation: str
    ) -> tuple[list[int], list[int]] | None:
        """(context ids, scored option ids) of the last prompt piece followed by the option,
        when the official scorer locates the option its own way (`model_adapters.spans`).

        The context ids are fed but not scored; they may differ between the options of one item
        (LLaVA-Med's "▁" after `<im_end>`). None: the engine's rule, the tail of
        tokenize(piece + option) after tokenize(piece). Also None when the official rule is
        undefined for this text (the official code would have failed its assert); the engine
        then falls back to its own rule and counts it.
        """
        return None

    def bos(self) -> list[Segment]:
        """The tokenizer's BOS as a segment (empty when it has none), for `prompt_segments`."""
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return [TokenIds((int(bos),))] if bos is not None else []

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

    def reference_forward(
        self, context: str, continuation: str, images: list[Image.Image]
    ) -> tuple[float, bool, int] | None:
        """(summed option log-prob, is greedy, option token count) from the model's own class:
        its processor's pixels and one full forward of token ids through its own input merge,
        positions and masks (`model_adapters.reference` has the pieces), never through this
        adapter's `preprocess`, `encode_images` or `lm_forward`. `check-adapter` compares the
        engine's scores with it. None (the default): the model has no such class, and the check
        is skipped."""
        return None
