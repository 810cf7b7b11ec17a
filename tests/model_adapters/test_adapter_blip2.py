"""BLIP-2 adapter: tiny Blip2ForConditionalGeneration (OPT) saved and loaded through the real
path, scored by the engine against the naive full forward, and run end to end by `chexbench run`."""

from __future__ import annotations

import json

import pytest
from helpers.runs import TASK, run_e2e  # noqa: F401  (TASK: the e2e task)
from helpers.tiny_release import write_tiny_blip2
from PIL import Image

from model_adapters.base import ImageSlot, TokenIds
from model_adapters.blip2 import Blip2Adapter
from model_adapters.engine import CheXbenchLM


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_blip2(tmp_path_factory.mktemp("blip2") / "model")


def test_prompt_is_queries_then_bos_then_question(folder):
    a = Blip2Adapter(pretrained=str(folder), device="cpu", dtype="float32")
    bos = TokenIds((a.tokenizer.bos_token_id,))
    assert a.prompt_segments("Is there effusion?", 1) == [ImageSlot(0), bos, "Is there effusion?"]


def test_engine_matches_naive_forward_and_image_matters(folder):
    a = Blip2Adapter(pretrained=str(folder), device="cpu", dtype="float32")
    lm = CheXbenchLM(a, batch_size=2, show_progress=False)
    img = Image.new("RGB", (40, 52), (200, 40, 90))
    blank = Image.new("RGB", (40, 52), (0, 0, 0))
    reqs = [("Which view?", f" {o}", {"visual": [img]}) for o in ("AP", "lateral")]
    got = lm.loglikelihood(reqs)
    for (ctx, cont, _), score in zip(reqs, got, strict=True):
        assert score[0] == pytest.approx(lm.score_naive(ctx, cont, [img])[0], abs=1e-4)
    assert got[0][0] != pytest.approx(lm.score_naive("Which view?", " AP", [blank])[0], abs=1e-3)


def test_missing_weights_and_cpu_8bit_are_clear_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        Blip2Adapter(pretrained=str(tmp_path / "absent"), device="cpu")
    from harness.errors import UserError

    with pytest.raises(UserError, match="load_in_8bit=true needs a CUDA GPU"):
        Blip2Adapter(pretrained=str(folder), device="cpu", load_in_8bit=True)


def test_chexbench_run_end_to_end(tmp_path, folder):
    results = run_e2e(tmp_path, "blip2", f"pretrained={folder},device=cpu,dtype=float32")
    assert json.dumps(results).count(TASK) >= 1
