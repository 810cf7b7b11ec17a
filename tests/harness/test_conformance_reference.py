"""check-adapter catches the mistakes a hand-written adapter really makes (issue 17).

A hand-written Qwen2-VL adapter that passed 1-D positions where the model uses M-RoPE scored
3e-3 away from the model's own forward, and every check passed, because the "naive forward"
reran the adapter's own code. And the sign check rigged only the first token of the last option,
which with a byte-level tokenizer is a bare space every option starts with, so the docs' own
example adapter failed it. Here, on tiny models of the real architectures:

- the docs' example adapter passes every check with a byte-level tokenizer whose options span
  several tokens that all start with the same bare-space token;
- each deliberately broken adapter (ignored image, missing attention mask, wrong positions,
  M-RoPE ignored, missing chat template, unnormalised pixels) fails at least one check, named;
- the same Qwen2-VL model through a native adapter (`--model hf`) passes every check.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from helpers.tiny_vlms import write_tiny_vlm

from harness.conformance import ConformanceReport, planted, rig_target, run_checks
from model_adapters.base import ImageEncoding, ImageSlot, VisionLanguageAdapter
from model_adapters.engine import CheXbenchLM
from model_adapters.hf_auto import HFAutoAdapter, load_processor
from model_adapters.reference import chat_prompt, processor_reference, user_turn

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "adapters" / "example_adapter.py"

BATCH = "batch-size invariance (1 vs 8)"
REFERENCE = "engine = reference forward (model's own)"
OWN = "engine = adapter's own full forward"
IMAGE = "image sensitivity (real vs blank)"
SIGN = "sign convention (rigged option wins)"
CPU = {"device": "cpu", "dtype": "float32"}


def _example_module():
    spec = importlib.util.spec_from_file_location("chexbench_example_adapter", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Example = _example_module().MyLlavaAdapter


def failed(report: ConformanceReport) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def shown(report: ConformanceReport) -> str:
    return "\n".join(f"{c.verdict} {c.name}: {c.figure} {c.detail}" for c in report.checks)


@pytest.fixture(scope="module")
def byte_llava(tmp_path_factory) -> str:
    return str(write_tiny_vlm("llava", tmp_path_factory.mktemp("llava_bytes"), byte_level=True))


@pytest.fixture(scope="module")
def items(phantom_conformance_items):
    return phantom_conformance_items[:3]


# ----- the docs' example adapter ----------------------------------------------------------------
def test_example_adapter_passes_with_a_byte_level_tokenizer(byte_llava, items):
    adapter = Example(pretrained=byte_llava, **CPU)
    lm = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    q, opts, ims = items[0]
    tokens = [lm.layout(q, " " + o, len(ims)).option for o in opts]
    space = adapter.tokenizer.convert_tokens_to_ids("Ġ")
    assert all(len(t) > 1 and t[0] == space for t in tokens)  # the case the old check got wrong
    # Rigging only the last option's first token (the old check) cannot make it win: every
    # option starts with that token.
    with planted(adapter, tokens[-1][0]):
        lls = [s[0] for s in lm.loglikelihood([_Req(q, " " + o, ims) for o in opts])]
    assert max(lls) > lls[-1] or math.isclose(max(lls[:-1]), lls[-1], abs_tol=1e-3)

    report = run_checks(adapter, items)
    assert report.passed, shown(report)
    checks = {c.name: c for c in report.checks}
    assert not checks[REFERENCE].skipped and "e-0" in checks[REFERENCE].figure
    i, k, rigged = rig_target(lm, items)
    assert len(rigged) > 1 and f"({len(rigged)} tokens)" in checks[SIGN].figure


class _Req:
    def __init__(self, context, continuation, images):
        self.args = (context, continuation, {"visual": images})


# ----- broken LLaVA adapters: the example with one mistake each ---------------------------------
class IgnoredImage(Example):
    """Encodes the image, then hands the LM zeros."""

    name = "broken_ignored_image"

    def encode_images(self, pixels):
        return [
            ImageEncoding(torch.zeros_like(e.slot_embeds)) for e in super().encode_images(pixels)
        ]


class NoAttentionMask(Example):
    """Drops the attention mask: left-padded rows attend to their pads."""

    name = "broken_no_attention_mask"

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        return super().lm_forward(inputs_embeds, None, position_ids, past_key_values, media)


class WrongPositions(Example):
    """Numbers every pass from 0, so the options cached after the prompt restart where the
    prompt began. (Counting from the cache with the pads included would not do: a uniform
    shift is invisible to RoPE, which sees relative positions only.)"""

    name = "broken_positions"

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        restarted = position_ids - position_ids[:, :1]
        return super().lm_forward(inputs_embeds, attention_mask, restarted, past_key_values, media)


class NoChatTemplate(Example):
    """Feeds the bare question after the image, without the model's chat template."""

    name = "broken_no_chat_template"

    def prompt_segments(self, context, n_images):
        return [*self.bos(), *(ImageSlot(i) for i in range(n_images)), context]


class RawPixels(Example):
    """Rescales to [0, 1] but skips the model's mean/std normalisation."""

    name = "broken_raw_pixels"

    def preprocess(self, image):
        return self.processor.image_processor(
            images=image, do_normalize=False, return_tensors="pt"
        )["pixel_values"][0]


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (IgnoredImage, {IMAGE, REFERENCE}),
        (NoAttentionMask, {BATCH, REFERENCE, OWN}),
        (WrongPositions, {REFERENCE, OWN}),
        (NoChatTemplate, {REFERENCE}),
        (RawPixels, {REFERENCE}),
    ],
    ids=["ignored_image", "no_attention_mask", "wrong_positions", "no_chat_template", "raw_pixels"],
)
def test_broken_adapter_fails(cls, expected, byte_llava, items):
    report = run_checks(cls(pretrained=byte_llava, **CPU), items)
    assert not report.passed
    assert failed(report) == expected, shown(report)


# ----- Qwen2-VL: M-RoPE ------------------------------------------------------------------------
class Qwen2VLSplice(VisionLanguageAdapter):
    """A hand-written Qwen2-VL adapter that splices image features into the LM input and passes
    the engine's 1-D positions: Qwen2-VL positions image tokens on a (t, h, w) grid and the
    text after an image from the grid's extent (M-RoPE), which this cannot express. Everything
    else is right: the chat template, the processor's pixels, the model's own vision tower."""

    name = "qwen2vl_splice"
    max_images = 1

    def __init__(self, pretrained: str):
        from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.model = Qwen2VLForConditionalGeneration.from_pretrained(pretrained).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.processor, _ = load_processor(pretrained, "qwen2_vl", {})

    def prompt_segments(self, context, n_images):
        return [
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
            *(
                piece
                for i in range(n_images)
                for piece in ("<|vision_start|>", ImageSlot(i), "<|vision_end|>")
            ),
            f"{context}<|im_end|>\n<|im_start|>assistant\n",
        ]

    def preprocess(self, image):
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]

    def encode_images(self, pixels):
        side = math.isqrt(pixels.shape[1])  # square phantom images: a (1, side, side) grid
        grid = torch.tensor([[1, side, side]] * pixels.shape[0])
        feats = self.model.model.get_image_features(pixels.flatten(0, 1), grid)
        return [ImageEncoding(f) for f in feats]

    def embed_tokens(self, ids):
        return self.model.get_input_embeddings()(ids)

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

    def reference_forward(self, context, continuation, images):
        prompt = chat_prompt(self.processor, user_turn(context, len(images)))
        return processor_reference(self.model, self.processor, prompt, continuation, images)


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory) -> str:
    return str(write_tiny_vlm("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl")))


def test_mrope_ignored_fails_only_the_reference_check(qwen2_vl, items):
    report = run_checks(Qwen2VLSplice(qwen2_vl), items)
    assert failed(report) == {REFERENCE}, shown(report)
    figure = next(c.figure for c in report.checks if c.name == REFERENCE)
    assert float(figure.split("= ")[1]) > 1e-3


def test_the_same_qwen2_vl_through_hf_passes(qwen2_vl, items):
    report = run_checks(HFAutoAdapter(pretrained=qwen2_vl, **CPU), items)
    assert report.passed, shown(report)


# ----- a native adapter that skips the chat template -------------------------------------------
class NativeWithoutTemplate(HFAutoAdapter):
    name = "broken_native_no_template"

    def prompt_text(self, context, n_images):
        return "<image>" * n_images + context


def test_native_adapter_without_the_chat_template_fails(byte_llava, items):
    report = run_checks(NativeWithoutTemplate(pretrained=byte_llava, **CPU), items)
    assert failed(report) == {REFERENCE}, shown(report)
