"""LLaVA-Med adapter: a tiny release in the LLaVA repository's layout -> `chexbench convert
llava-med` -> LlavaForConditionalGeneration; engine equals naive forward; `chexbench run` works.
(Logit preservation against the original-layout reference is in test_converters.py.)"""

from __future__ import annotations

import pytest
from PIL import Image

from harness.cli import main
from model_adapters.base import ImageSlot, TokenIds
from model_adapters.converters.tiny import write_tiny_llava_med_release
from model_adapters.engine import CheXbenchLM
from model_adapters.llava_med import LlavaMedAdapter


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    src = write_tiny_llava_med_release(root / "src")
    assert main(["convert", "llava-med", str(src), str(root / "model")]) == 0
    return root / "model"


def test_official_template_pad_preprocessing_and_engine_equals_naive(folder):
    a = LlavaMedAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    assert a.prompt_segments("Is there effusion?", 1) == [
        TokenIds((a.tokenizer.bos_token_id,)), "Is there effusion?\n", ImageSlot(0), ""]
    assert a.image_processor.do_pad  # v1.5: image_aspect_ratio "pad"
    lm = CheXbenchLM(a, batch_size=2, show_progress=False)
    img = Image.new("RGB", (40, 64), (20, 140, 90))
    reqs = [("Is there effusion?", f" {o}", {"visual": [img]}) for o in ("yes", "no")]
    for (ctx, cont, _), s in zip(reqs, lm.loglikelihood(reqs), strict=True):
        assert s[0] == pytest.approx(lm.score_naive(ctx, cont, [img])[0], abs=1e-4)


def test_chexbench_run_end_to_end(tmp_path, folder):
    from test_adapter_blip2 import run_e2e

    run_e2e(tmp_path, "llava_med", f"pretrained={folder},device=cpu,dtype=float32")
