"""Tiny same-architecture models for every built-in adapter, written to disk in their release
layouts and loaded by name through the registry, as a user's `--model-args pretrained=DIR`
would. Shared by the conformance tests and `bench/bench_adapters.py`, so both exercise the real
loading paths (save -> load, converter -> load) rather than objects built in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CPU = {"device": "cpu", "dtype": "float32"}


def _chexagent(root: Path) -> dict[str, Any]:
    from chexagent.modeling import build_model, save_bundle

    save_bundle(build_model("tiny", seed=0), root)
    return {"pretrained": str(root)}


def _chexagent2(root: Path) -> dict[str, Any]:
    from helpers.tiny_release import write_tiny_chexagent2_standin

    # The stand-in's model class is code inside the folder: it loads only with the flag.
    return {"pretrained": str(write_tiny_chexagent2_standin(root)), "trust_remote_code": True}


def _blip2(root: Path) -> dict[str, Any]:
    from helpers.tiny_release import write_tiny_blip2

    return {"pretrained": str(write_tiny_blip2(root))}


def _instructblip(root: Path) -> dict[str, Any]:
    from helpers.tiny_release import write_tiny_instructblip

    return {"pretrained": str(write_tiny_instructblip(root))}


def _llava_med(root: Path) -> dict[str, Any]:
    """LLaVA-Med v0 (the paper's): LLaMA + linear projector, the CLIP tower passed apart."""
    from helpers.tiny_release import write_tiny_llava_med_release
    from model_adapters.converters.llava_med import convert_llava_med

    src = write_tiny_llava_med_release(root / "release", v0=True)
    convert_llava_med(src, root / "model", vision_tower=src / "clip")
    return {"pretrained": str(root / "model")}


def _llava_med_v15(root: Path) -> dict[str, Any]:
    from helpers.tiny_release import write_tiny_llava_med_release
    from model_adapters.converters.llava_med import convert_llava_med

    convert_llava_med(write_tiny_llava_med_release(root / "release"), root / "model")
    return {"pretrained": str(root / "model")}


def _xraygpt(root: Path) -> dict[str, Any]:
    from helpers.tiny_release import QFORMER, VISION, write_tiny_xraygpt_release
    from model_adapters.converters.xraygpt import convert_xraygpt

    convert_xraygpt(
        write_tiny_xraygpt_release(root / "release"),
        root / "model",
        vit_heads=VISION["heads"],
        qformer_heads=QFORMER["heads"],
        vit_depth=VISION["layers"],
    )
    return {"pretrained": str(root / "model")}


def _medflamingo(root: Path) -> dict[str, Any]:
    from helpers.tiny_medflamingo import build_tiny

    build_tiny(root)
    return {"pretrained": str(root)}


def _radfm(root: Path) -> dict[str, Any]:
    from helpers.tiny_radfm import build_tiny

    build_tiny(root)
    return {"pretrained": str(root)}


TINY_BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "chexagent": _chexagent,
    "chexagent2": _chexagent2,
    "blip2": _blip2,
    "instructblip": _instructblip,
    "llava_med": _llava_med,
    "llava_med_v15": _llava_med_v15,
    "xraygpt": _xraygpt,
    "medflamingo": _medflamingo,
    "radfm": _radfm,
}


def write_tiny(name: str, root: Path) -> dict[str, Any]:
    """Write adapter `name`'s tiny model under `root`; returns its model args (CPU, float32)."""
    root.mkdir(parents=True, exist_ok=True)
    return {**TINY_BUILDERS[name](root), **CPU}
