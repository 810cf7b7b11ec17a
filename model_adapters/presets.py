"""Named presets: `--model chexagent-8b` instead of an adapter plus its arguments.

A preset names a released model the way users know it and expands to the adapter, its weights
(hub id) and the arguments the official evaluation used. It never grants anything: a preset
whose model runs code from its hub repository still needs the user's `--trust-remote-code`.
Arguments the user passes win over the preset's. Import-light: `chexbench --help` lists these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import RemoteCodeRefused, UserError


@dataclass(frozen=True)
class Preset:
    name: str
    adapter: str
    model_args: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False  # the model's code lives on the hub
    mc_mode: str | None = None  # the official multiple-choice mode, when not log-likelihood
    needs: tuple[str, ...] = ()  # model args the user must add (a converted folder)
    license: str = ""
    note: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("chexagent-8b", "chexagent", {"pretrained": "StanfordAIMI/CheXagent-8b"},
           trust_remote_code=True, license="no license tag on the card; code CC-BY-NC-ND-4.0",
           note="the paper's model (Table 2-4 rows)"),
    Preset("chexagent-2-3b", "chexagent2", {"pretrained": "StanfordAIMI/CheXagent-2-3b"},
           trust_remote_code=True, mc_mode="generate", license="cc-by-nc-4.0",
           note="scored by generation, as the official code does"),
    Preset("blip2-opt-2.7b", "blip2",
           {"pretrained": "Salesforce/blip2-opt-2.7b", "load_in_8bit": True, "dtype": "float16"},
           license="MIT", note="official evaluation: 8-bit, fp16 (needs a CUDA GPU)"),
    Preset("instructblip-vicuna-7b", "instructblip",
           {"pretrained": "Salesforce/instructblip-vicuna-7b", "load_in_8bit": True,
            "dtype": "float16"},
           license="other (Vicuna / LLaMA terms)", note="official evaluation: 8-bit (CUDA GPU)"),
    Preset("xraygpt", "xraygpt", needs=("pretrained",), license="see mbzuai-oryx/XrayGPT",
           note="pretrained=<folder written by `chexbench convert xraygpt`>"),
    Preset("med-flamingo", "medflamingo", {"pretrained": "med-flamingo/med-flamingo"},
           needs=("llama",), license="no license tag on the card; LLaMA-7B under its own",
           note="llama=<LLaMA-7B folder in transformers format>"),
    Preset("radfm", "radfm", needs=("pretrained",), license="see chaoyi-wu/RadFM",
           note="pretrained=<folder with chaoyi-wu/RadFM pytorch_model.bin>"),
    Preset("llava-med-v0", "llava_med", needs=("pretrained",),
           license="microsoft-research-license (delta on LLaMA-7B)",
           note="the paper's LLaVA-Med; pretrained=<`chexbench convert llava-med` output>"),
)}


def expand_model(name: str, model_args: dict[str, Any],
                 trust_remote_code: bool) -> tuple[str, dict[str, Any], Preset | None]:
    """(adapter, model args, preset) for `--model NAME`: a preset expands, an adapter passes."""
    preset = PRESETS.get(name)
    if preset is None:
        return name, dict(model_args), None
    if preset.trust_remote_code and not trust_remote_code:
        raise RemoteCodeRefused(
            f"preset {name!r} runs code from its hub repository "
            f"({preset.model_args.get('pretrained', preset.adapter)}); running downloaded code "
            "is your decision: pass --trust-remote-code to allow it")
    args = {**preset.model_args, **model_args}
    missing = [k for k in preset.needs if k not in args]
    if missing:
        raise UserError(f"preset {name!r} needs --model-args {','.join(f'{k}=...' for k in missing)}"
                        f" ({preset.note})")
    return preset.adapter, args, preset
