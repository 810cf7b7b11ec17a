"""BLIP-2 adapter: tiny Blip2ForConditionalGeneration (OPT) saved and loaded through the real
path, scored by the engine against the naive full forward, and run end to end by `chexbench run`."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from harness.cli import main
from harness.phantom.writer import generate_phantom
from model_adapters.base import ImageSlot, TokenIds
from model_adapters.blip2 import Blip2Adapter
from model_adapters.converters.tiny import write_tiny_blip2
from model_adapters.engine import CheXbenchLM

TASK = "chexbench_view_classification_mimic_cxr"


def run_e2e(tmp_path, model: str, model_args: str, extra: tuple[str, ...] = ()) -> dict:
    """`chexbench run` on phantom data; returns results.json (shared by the adapter tests)."""
    ph = generate_phantom(tmp_path / "phantom", n_per_pair=2, seed=0, image_size=64, n_text=0,
                          n_fairness=0)
    out = tmp_path / "runs"
    rc = main(["run", "--model", model, "--model-args", model_args, "--data", str(ph.data_json),
               "--image-root", str(ph.out_dir), "--output", str(out), "--tasks", TASK,
               "--text-metrics", "rouge", "--bootstrap-samples", "20", "--batch-size", "2", *extra])
    assert rc == 0
    (results,) = out.glob("*/results.json")
    return json.loads(results.read_text())


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
