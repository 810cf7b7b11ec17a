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
    needs_remote_code: bool = (
        False  # its code lives on the hub: the user must pass --trust-remote-code
    )
    mc_mode: str | None = None  # the official multiple-choice mode, when not log-likelihood
    needs: tuple[str, ...] = ()  # model args the user must add (a converted folder)
    license: str = ""
    note: str = ""
    source: str = ""  # where the facts above were checked (model card, repository)
    # Why this model cannot run here yet (no adapter, no converter); empty when it can.
    unavailable: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "chexagent-8b",
            "chexagent",
            {"pretrained": "StanfordAIMI/CheXagent-8b"},
            needs_remote_code=True,
            license="no license tag on the card; code CC-BY-NC-ND-4.0",
            note="the paper's model (Table 2-4 rows)",
        ),
        Preset(
            "chexagent-2-3b",
            "chexagent2",
            {"pretrained": "StanfordAIMI/CheXagent-2-3b"},
            needs_remote_code=True,
            mc_mode="generate",
            license="cc-by-nc-4.0",
            note="scored by generation, as the official code does",
        ),
        Preset(
            "blip2-opt-2.7b",
            "blip2",
            {"pretrained": "Salesforce/blip2-opt-2.7b", "load_in_8bit": True, "dtype": "float16"},
            license="MIT",
            note="official evaluation: 8-bit, fp16 (needs a CUDA GPU)",
        ),
        Preset(
            "instructblip-vicuna-7b",
            "instructblip",
            {
                "pretrained": "Salesforce/instructblip-vicuna-7b",
                "load_in_8bit": True,
                "dtype": "float16",
            },
            license="other (Vicuna / LLaMA terms)",
            note="official evaluation: 8-bit (CUDA GPU)",
        ),
        Preset(
            "xraygpt",
            "xraygpt",
            needs=("pretrained",),
            license="see mbzuai-oryx/XrayGPT",
            note="pretrained=<folder written by `chexbench convert xraygpt`>",
        ),
        Preset(
            "med-flamingo",
            "medflamingo",
            {"pretrained": "med-flamingo/med-flamingo"},
            needs=("llama",),
            license="no license tag on the card; LLaMA-7B under its own",
            note="llama=<LLaMA-7B folder in transformers format>",
        ),
        Preset(
            "radfm",
            "radfm",
            needs=("pretrained",),
            license="see chaoyi-wu/RadFM",
            note="pretrained=<folder with chaoyi-wu/RadFM pytorch_model.bin>",
        ),
        Preset(
            "llava-med-v0",
            "llava_med",
            needs=("pretrained",),
            license="microsoft-research-license (delta on LLaMA-7B)",
            note="the paper's LLaVA-Med; pretrained=<`chexbench convert llava-med` output>",
        ),
        Preset(
            "llava-med-v1.5",
            "llava_med_v15",
            needs=("pretrained",),
            license="apache-2.0 on the hub; the card says Mistral-7B-Instruct-v0.2's license, "
            "research use only",
            note="not the paper's LLaVA-Med; pretrained=<`chexbench convert llava-med` output of "
            "microsoft/llava-med-v1.5-mistral-7b> (model type llava_mistral is not in "
            "transformers)",
            source="https://huggingface.co/microsoft/llava-med-v1.5-mistral-7b",
        ),
        # ----- current models, through `--model hf` (docs/evaluate-any-model.md) ---------------------
        Preset(
            "medgemma-4b-it",
            "hf",
            {"pretrained": "google/medgemma-4b-it", "dtype": "bfloat16"},
            license="other: Health AI Developer Foundations terms (gated: accept them on the "
            "hub, then log in)",
            note="Gemma 3 (transformers >= 4.50); bfloat16 or float32, never float16 (Gemma 3 "
            "overflows)",
            source="https://huggingface.co/google/medgemma-4b-it",
        ),
        Preset(
            "qwen2.5-vl-7b",
            "hf",
            {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "dtype": "bfloat16"},
            license="apache-2.0",
            note="qwen2_5_vl (transformers >= 4.49); M-RoPE and dynamic resolution run in the "
            "model's own forward",
            source="https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct",
        ),
        Preset(
            "lingshu-7b",
            "hf",
            {"pretrained": "lingshu-medical-mllm/Lingshu-7B", "dtype": "bfloat16"},
            license="MIT as reported for the release (check the card before use)",
            note="Qwen2.5-VL architecture (transformers >= 4.49)",
            source="https://huggingface.co/lingshu-medical-mllm/Lingshu-7B",
        ),
        Preset(
            "llava-onevision-7b",
            "hf",
            {"pretrained": "llava-hf/llava-onevision-qwen2-7b-ov-hf", "dtype": "bfloat16"},
            license="apache-2.0",
            note="llava_onevision (transformers >= 4.45); anyres tiling in its processor",
            source="https://huggingface.co/llava-hf/llava-onevision-qwen2-7b-ov-hf",
        ),
        Preset(
            "maira-2",
            "hf",
            {"pretrained": "microsoft/maira-2"},
            needs_remote_code=True,
            license="msrla (Microsoft Research License; gated)",
            note="custom code (AutoModelForCausalLM + its own processor)",
            source="https://huggingface.co/microsoft/maira-2",
            unavailable="MAIRA-2 is not an image-text-to-text model of transformers: its hub code "
            "loads through AutoModelForCausalLM and builds its prompt with its processor's "
            "format_and_preprocess_reporting_input (frontal, lateral, prior images, indication, "
            "technique, comparison), which no chat-template convention reproduces; an adapter "
            "for that API is not written yet, and its code is unverified on transformers 4.57",
        ),
        Preset(
            "llava-rad",
            "(none yet)",
            license="Microsoft Research License (research only)",
            note="LLaVA architecture with a BiomedCLIP-CXR (open_clip) image encoder",
            source="https://huggingface.co/microsoft/llava-rad and github.com/microsoft/LLaVA-Rad",
            unavailable="LLaVA-Rad is not in transformers' format: a LoRA on lmsys/vicuna-7b-v1.5 "
            "plus a BiomedCLIP-CXR vision tower, loaded by the LLaVA-Rad package (transformers "
            "4.31, open_clip); running it here needs a converter to LlavaForConditionalGeneration "
            "(LoRA merge, the open_clip tower ported), not written yet",
        ),
    )
}


def expand_model(
    name: str, model_args: dict[str, Any], trust_remote_code: bool
) -> tuple[str, dict[str, Any], Preset | None]:
    """(adapter, model args, preset) for `--model NAME`: a preset expands, an adapter passes."""
    preset = PRESETS.get(name)
    if preset is None:
        return name, dict(model_args), None
    if preset.unavailable:
        raise UserError(f"preset {name!r} cannot run yet: {preset.unavailable}")
    if preset.needs_remote_code and not trust_remote_code:
        raise RemoteCodeRefused(
            f"preset {name!r} runs code from its hub repository "
            f"({preset.model_args.get('pretrained', preset.adapter)}); running downloaded code "
            "is your decision: pass --trust-remote-code to allow it"
        )
    args = {**preset.model_args, **model_args}
    missing = [k for k in preset.needs if k not in args]
    if missing:
        raise UserError(
            f"preset {name!r} needs --model-args {','.join(f'{k}=...' for k in missing)}"
            f" ({preset.note})"
        )
    return preset.adapter, args, preset
