"""Presets name what they run, say where their facts come from, and refuse clearly where the
model cannot run yet (MAIRA-2, LLaVA-Rad) or runs hub code without the user's flag."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import RemoteCodeRefused, UserError
from model_adapters.presets import PRESETS, expand_model
from model_adapters.registry import available

MODERN = ("medgemma-4b-it", "qwen2.5-vl-7b", "lingshu-7b", "llava-onevision-7b")
PAPER = (
    "chexagent-8b",
    "blip2-opt-2.7b",
    "instructblip-vicuna-7b",
    "xraygpt",
    "med-flamingo",
    "radfm",
    "llava-med-v0",
)


def test_the_issue_asks_for_these():
    assert {*MODERN, *PAPER, "chexagent-2-3b", "maira-2", "llava-rad", "llava-med-v1.5"} <= set(
        PRESETS
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_runnable_preset_names_an_adapter_that_exists(name):
    preset = PRESETS[name]
    if preset.unavailable:
        with pytest.raises(UserError, match="cannot run yet"):
            expand_model(name, {}, trust_remote_code=True)
        return
    assert preset.adapter in available()
    assert preset.license


@pytest.mark.parametrize("name", MODERN)
def test_modern_presets_run_through_hf_with_a_hub_id_dtype_and_source(name):
    adapter, args, preset = expand_model(name, {}, trust_remote_code=False)
    assert adapter == "hf" and "/" in args["pretrained"] and args["dtype"] == "bfloat16"
    assert preset.source.startswith("https://huggingface.co/")
    assert expand_model(name, {"dtype": "float32"}, False)[1]["dtype"] == "float32"  # user wins


def test_hub_code_needs_the_flag():
    with pytest.raises(RemoteCodeRefused, match="--trust-remote-code"):
        expand_model("chexagent-2-3b", {}, trust_remote_code=False)


@pytest.mark.parametrize("name", ["maira-2", "llava-rad"])
def test_unrunnable_presets_refuse_in_one_line(name, capsys):
    assert main(["check-adapter", name, "--trust-remote-code"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"preset {name!r} cannot run yet" in err


def test_adapters_lists_the_presets_with_their_status(capsys):
    assert main(["adapters", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["presets"]}
    assert listed["medgemma-4b-it"]["unavailable"] == ""
    assert listed["maira-2"]["unavailable"] and listed["llava-rad"]["unavailable"]
    assert main(["adapters"]) == 0
    assert "NOT RUNNABLE YET" in capsys.readouterr().out
