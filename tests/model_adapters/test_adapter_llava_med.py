"""LLaVA-Med adapters: tiny releases in the LLaVA repository's layouts (v0: LLaMA + linear
projector + a separate CLIP tower; v1.5: Mistral + MLP projector + tower) -> `chexbench convert
llava-med` -> LlavaForConditionalGeneration; engine equals naive forward; `chexbench run` works;
each adapter refuses the other variant's folder, so their results cannot be mixed up.
(Logit preservation against the original-layout reference is in test_converters.py; the v0
official input, token by token, is in test_protocol_golden.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.tiny_release import write_tiny_llava_med_release
from PIL import Image

from harness.cli import main
from harness.errors import UserError
from model_adapters.base import ImageSlot, TokenIds
from model_adapters.engine import CheXbenchLM
from model_adapters.llava_med import LlavaMedAdapter, LlavaMedV15Adapter

PAPER_ROW = Path(__file__).resolve().parents[2] / "results" / "paper" / "llava-med.json"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    src0 = write_tiny_llava_med_release(root / "src0", v0=True)
    assert (
        main(
            [
                "convert",
                "llava-med",
                str(src0),
                str(root / "v0"),
                "--vision-tower",
                str(src0 / "clip"),
            ]
        )
        == 0
    )
    src15 = write_tiny_llava_med_release(root / "src15")
    assert main(["convert", "llava-med", str(src15), str(root / "v15")]) == 0
    return root / "v0", root / "v15"


def _engine_equals_naive(a):
    lm = CheXbenchLM(a, batch_size=2, show_progress=False)
    img = Image.new("RGB", (40, 64), (20, 140, 90))
    reqs = [("Is there effusion?", f" {o}", {"visual": [img]}) for o in ("yes", "no", "10")]
    for (ctx, cont, _), s in zip(reqs, lm.loglikelihood(reqs), strict=True):
        assert s[0] == pytest.approx(lm.score_naive(ctx, cont, [img])[0], abs=1e-4)


def test_v0_official_template_and_engine_equals_naive(folders):
    a = LlavaMedAdapter(pretrained=str(folders[0]), device="cpu", dtype="float32")
    assert a.prompt_segments("Is there effusion?", 1) == [
        TokenIds((a.tokenizer.bos_token_id,)),
        "Is there effusion?\n<im_start>",
        ImageSlot(0),
        "<im_end>",
    ]
    assert not a.image_processor.do_pad  # v0: CLIP's resize and centre crop
    assert a.display_name == "LLaVA-Med" and a.model_info()["llava_med_variant"] == "v0"
    _engine_equals_naive(a)


def test_v15_own_template_pad_preprocessing_and_engine_equals_naive(folders):
    a = LlavaMedV15Adapter(pretrained=str(folders[1]), device="cpu", dtype="float32")
    assert a.prompt_segments("Is there effusion?", 1) == [
        TokenIds((a.tokenizer.bos_token_id,)),
        "[INST] ",
        ImageSlot(0),
        "\nIs there effusion? [/INST]",
    ]
    assert a.image_processor.do_pad  # v1.5: image_aspect_ratio "pad"
    assert "v1.5" in a.display_name
    _engine_equals_naive(a)


def test_each_variant_refuses_the_others_folder(folders):
    with pytest.raises(UserError, match="LLaVA-Med v1.5: use --model llava_med_v15"):
        LlavaMedAdapter(pretrained=str(folders[1]), device="cpu", dtype="float32")
    with pytest.raises(UserError, match="LLaVA-Med v0: use --model llava_med$"):
        LlavaMedV15Adapter(pretrained=str(folders[0]), device="cpu", dtype="float32")
    cfg = json.loads((folders[0] / "config.json").read_text())
    assert cfg["chexbench_llava_med_variant"] == "v0"


@pytest.mark.parametrize("name,which", [("llava_med", 0), ("llava_med_v15", 1)])
def test_chexbench_run_end_to_end_names_the_variant(tmp_path, folders, name, which):
    """Only a v0 run is the paper's LLaVA-Med (the leaderboard pairs them for paper deltas)."""
    import shutil

    from helpers.runs import run_e2e

    from leaderboard.loader import load_folder

    results = run_e2e(tmp_path, name, f"pretrained={folders[which]},device=cpu,dtype=float32")
    assert results["model"]["adapter"] == name
    assert results["model"]["name"] == ("LLaVA-Med", "LLaVA-Med v1.5 (Mistral)")[which]
    board = tmp_path / "board"
    board.mkdir()
    shutil.copy(PAPER_ROW, board / "paper-llava-med.json")
    (run,) = (tmp_path / "runs").glob("*/results.json")
    shutil.copytree(run.parent, board / "run")
    entries = {e.results.source: e for e in load_folder(board).entries}
    assert entries["paper"].same_model(entries[results["source"]]) == (name == "llava_med")
    if name == "llava_med_v15":  # renaming a v1.5 run "LLaVA-Med" still does not pair it
        renamed = json.loads((board / "run" / "results.json").read_text())
        renamed["model"]["name"] = "LLaVA-Med"
        (board / "run" / "results.json").write_text(json.dumps(renamed))
        entries = {e.results.source: e for e in load_folder(board).entries}
        assert not entries["paper"].same_model(entries[renamed["source"]])
