"""CheXagent-2 adapter. Its real code lives on the hub and cannot be fetched here, so the model
is a tiny stand-in folder whose model class is code inside the folder (loads only with
trust_remote_code), following the documented structure: Phi-style decoder, Qwen-VL-style
`transformer.visual` with `image_transform`, a chat template with "from"/"value" turns."""

from __future__ import annotations

import math

import pytest
from helpers.tiny_release import write_tiny_chexagent2_standin
from PIL import Image

from model_adapters.base import ImageSlot, TokenIds
from model_adapters.chexagent2 import CheXagent2Adapter
from model_adapters.engine import CheXbenchLM


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_chexagent2_standin(tmp_path_factory.mktemp("c2") / "model")


def test_remote_code_only_with_the_explicit_flag(folder):
    with pytest.raises(PermissionError, match="--trust-remote-code"):
        CheXagent2Adapter(pretrained=str(folder), device="cpu")


def test_chat_template_with_system_turn_and_image_slots(folder):
    a = CheXagent2Adapter(pretrained=str(folder), device="cpu", trust_remote_code=True)
    segs = a.prompt_segments("Is there effusion?", 2)
    start, end = (
        TokenIds((a.tokenizer.convert_tokens_to_ids(t),)) for t in ("<|img|>", "<|/img|>")
    )
    assert segs == [
        "<|system|>\nYou are a helpful assistant.<|endoftext|>\n<|user|>\nPicture 1:",
        start,
        ImageSlot(0),
        end,
        "\nPicture 2:",
        start,
        ImageSlot(1),
        end,
        "\nIs there effusion?<|endoftext|>\n<|assistant|>\n",
    ]


def test_generate_mode_counts_unparseable_and_loglikelihood_equals_naive(folder):
    a = CheXagent2Adapter(pretrained=str(folder), device="cpu", trust_remote_code=True)
    img = Image.new("RGB", (40, 52), (20, 140, 90))
    reqs = [("Is there effusion?", f" {o}", {"visual": [img]}) for o in ("yes", "no")]
    gen = CheXbenchLM(a, batch_size=2, show_progress=False, mc_mode="generate")
    scores = gen.loglikelihood(reqs)
    # A random model names no "(A)"/"(B)": wrong for every option, flagged, never guessed.
    assert all(s.unparseable and math.isinf(s[0]) for s in scores)
    assert isinstance(scores[0].generated, str)
    ll = CheXbenchLM(a, batch_size=2, show_progress=False)
    for (ctx, cont, _), s in zip(reqs, ll.loglikelihood(reqs), strict=True):
        assert s[0] == pytest.approx(ll.score_naive(ctx, cont, [img])[0], abs=1e-4)


def test_chexbench_run_end_to_end_generate_mode(tmp_path, folder):
    from helpers.runs import run_e2e

    run_e2e(
        tmp_path,
        "chexagent2",
        f"pretrained={folder},device=cpu,dtype=float32",
        ("--trust-remote-code", "--mc-mode", "generate"),
    )
