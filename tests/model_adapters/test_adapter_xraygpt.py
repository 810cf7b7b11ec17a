"""XrayGPT adapter: tiny release pieces in MiniGPT-4's layout -> `chexbench convert xraygpt` ->
the adapter; the engine matches the naive forward and `chexbench run` works end to end.
(Logit preservation against the original-layout reference is in test_converters.py.)"""

from __future__ import annotations

import pytest
from helpers.tiny_release import QFORMER, VISION, write_tiny_xraygpt_release
from PIL import Image

from harness.cli import main
from harness.errors import UserError
from model_adapters.base import ImageSlot, TokenIds
from model_adapters.converters.xraygpt import convert_xraygpt
from model_adapters.engine import CheXbenchLM
from model_adapters.xraygpt import XrayGPTAdapter


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("xraygpt")
    src = write_tiny_xraygpt_release(root / "src")
    convert_xraygpt(
        src,
        root / "model",
        vit_heads=VISION["heads"],
        qformer_heads=QFORMER["heads"],
        vit_depth=VISION["layers"],
    )
    return root / "model"


def test_official_template_and_engine_equals_naive(folder):
    a = XrayGPTAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    assert a.prompt_segments("Is there effusion?", 1) == [
        TokenIds((a.tokenizer.bos_token_id,)),
        "<Img>",
        ImageSlot(0),
        "</Img> Is there effusion?",
    ]
    assert a.model.vision_model.post_layernorm.eps == 1e-5
    lm = CheXbenchLM(a, batch_size=2, show_progress=False)
    img = Image.new("RGB", (40, 52), (20, 140, 90))
    reqs = [("Is there effusion?", f" {o}", {"visual": [img]}) for o in ("yes", "no")]
    for (ctx, cont, _), s in zip(reqs, lm.loglikelihood(reqs), strict=True):
        assert s[0] == pytest.approx(lm.score_naive(ctx, cont, [img])[0], abs=1e-4)


def test_unconverted_folder_is_refused_with_the_convert_command(tmp_path):
    with pytest.raises(UserError, match="chexbench convert xraygpt"):
        XrayGPTAdapter(device="cpu")
    with pytest.raises(FileNotFoundError, match="chexbench convert xraygpt"):
        XrayGPTAdapter(pretrained=str(tmp_path / "absent"), device="cpu")


def test_chexbench_run_end_to_end(tmp_path, folder):
    from helpers.runs import run_e2e

    run_e2e(tmp_path, "xraygpt", f"pretrained={folder},device=cpu,dtype=float32")
    assert (
        main(["run", "--model", "xraygpt", "--model-args", "device=cpu", "--data", "x.json"]) == 2
    )


def test_a_tokenizer_without_bos_is_refused(folder, tmp_path):
    """The official input starts with BOS; without one the layout would silently lose it."""
    import json
    import shutil

    copy = tmp_path / "no-bos"
    shutil.copytree(folder, copy)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = copy / name
        if path.is_file():
            config = json.loads(path.read_text())
            config.update(bos_token=None, add_bos_token=False)
            path.write_text(json.dumps(config))
    with pytest.raises(UserError, match="has no BOS token"):
        XrayGPTAdapter(pretrained=str(copy), device="cpu", dtype="float32")
