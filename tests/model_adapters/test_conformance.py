"""`check-adapter` is the bar for a new adapter, so it must pass every built-in adapter on a
model of its real architecture, and fail, naming the check, on the three bugs peer harnesses
shipped: a loss returned as a log-prob, an image that never reaches the model, scored tokens
that are not the option's. The broken adapters below are tiny CheXagent adapters with exactly
one bug each; this file is also handed to the CLI as an `--adapter-file`.
"""

from __future__ import annotations

import pytest
import torch
from helpers.tiny_models import TINY_BUILDERS, write_tiny

from harness.cli import main
from harness.conformance import ConformanceReport, run_checks
from model_adapters.base import ImageEncoding
from model_adapters.chexagent import CheXagentAdapter
from model_adapters.registry import get_adapter_class

pytestmark = pytest.mark.usefixtures("single_thread")

IMAGE = "image sensitivity (real vs blank)"
ALIGN = "scored tokens = option tokens"
SIGN = "sign convention (rigged option wins)"
REFERENCE = "engine = reference forward (model's own)"


def failed(report: ConformanceReport) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def shown(report: ConformanceReport) -> str:
    return "\n".join(
        f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.figure} {c.detail}" for c in report.checks
    )


# ----- every built-in adapter passes ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY_BUILDERS))
def test_builtin_adapter_passes_every_check(name, tmp_path, phantom_conformance_items):
    adapter = get_adapter_class(name)(**write_tiny(name, tmp_path / name))
    report = run_checks(adapter, phantom_conformance_items[:3])
    assert report.passed, shown(report)
    figures = {c.name: c.figure for c in report.checks}
    assert figures[ALIGN] == "9/9 options exact"
    assert "items/s" in figures["throughput"]


# ----- three deliberately broken adapters fail their own check --------------------------------
class LossNotLogprobAdapter(CheXagentAdapter):
    """Hands the engine per-token losses (-log p) where logits belong."""

    name = "broken_loss"

    def lm_forward(self, *args, **kwargs):
        logits, cache = super().lm_forward(*args, **kwargs)
        return -torch.log_softmax(logits.float(), dim=-1), cache


class ImageBlindAdapter(CheXagentAdapter):
    """Encodes the image, then drops it: every image becomes the same zero embeddings."""

    name = "broken_image_blind"

    def encode_images(self, pixels):
        return [
            ImageEncoding(torch.zeros_like(e.slot_embeds)) for e in super().encode_images(pixels)
        ]


class DroppedTokenAdapter(CheXagentAdapter):
    """Strips a trailing EOS that is not there, losing each text's last token (the option's)."""

    name = "broken_dropped_token"

    def tokenize(self, text):
        return super().tokenize(text)[:-1]


class ExtraEosAdapter(CheXagentAdapter):
    """Tokenizes with an EOS appended, so every option is scored with one token too many."""

    name = "broken_extra_eos"

    def tokenize(self, text):
        return super().tokenize(text) + [self.tokenizer.eos_token_id]


@pytest.fixture(scope="module")
def chexagent_folder(tmp_path_factory):
    return write_tiny("chexagent", tmp_path_factory.mktemp("tiny") / "chexagent")


@pytest.mark.parametrize(
    ("cls", "expected", "figure"),
    [
        # The model's own forward (Blip2ForConditionalGeneration on the tiny checkpoint) disagrees
        # with each of them too.
        (LossNotLogprobAdapter, {SIGN, REFERENCE}, "the rigged option lost"),
        (ImageBlindAdapter, {IMAGE, REFERENCE}, "the image never reaches the model"),
        (ExtraEosAdapter, {ALIGN, REFERENCE}, "'PA' scored as ' PA</s>'"),
        # Every option collapses onto one token: alignment fails, and no option can be rigged apart.
        (DroppedTokenAdapter, {ALIGN, SIGN, REFERENCE}, "'PA' scored as '<s>'"),
    ],
    ids=["loss", "image_blind", "extra_eos", "dropped_token"],
)
def test_broken_adapter_fails_its_check(
    cls, expected, figure, chexagent_folder, phantom_conformance_items
):
    report = run_checks(cls(**chexagent_folder), phantom_conformance_items[:3])
    assert not report.passed
    assert failed(report) == expected, shown(report)
    assert any(figure in c.detail for c in report.checks if not c.passed), shown(report)


def test_adapter_that_crashes_gets_a_failing_report(chexagent_folder, phantom_conformance_items):
    class OutOfVocabAdapter(CheXagentAdapter):
        name = "broken_out_of_vocab"

        def tokenize(self, text):
            return [t + len(self.tokenizer) for t in super().tokenize(text)]

    report = run_checks(OutOfVocabAdapter(**chexagent_folder), phantom_conformance_items[:2])
    (check,) = report.checks
    assert not check.passed and check.figure == "raised" and "IndexError" in check.detail


def test_cli_exits_nonzero_naming_the_failed_check(chexagent_folder, capsys):
    args = f"pretrained={chexagent_folder['pretrained']},device=cpu,dtype=float32"
    rc = main(
        [
            "check-adapter",
            "broken_image_blind",
            "--adapter-file",
            __file__,
            "--model-args",
            args,
            "--items",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "adapter FAILED" in out
    row = next(line for line in out.splitlines() if "image sensitivity" in line)
    assert "FAIL" in row and "0.00e+00" in row
    row = next(line for line in out.splitlines() if "reference forward" in line)
    assert "FAIL" in row  # the model's own forward sees the image
    assert sum("PASS" in line for line in out.splitlines()) == 6  # the other checks pass
