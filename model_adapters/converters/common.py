"""What every checkpoint converter needs: safe reading, a strict key check, and safe writing.

Released checkpoints come as `.pth`/`.bin` pickles or `.safetensors`; pickles are read with
`weights_only=True` so a checkpoint can never run code. The converted state dict is checked
against the target model's own key set and shapes (built on the meta device, so a 7B model
costs no memory) and refused, naming the keys, when anything is missing, left over or
mis-shaped: no silent `strict=False`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch

from harness.checkpoints import (  # noqa: F401  (re-exported for the converters)
    PICKLE_SUFFIXES,
    CheckpointError,
    key_listing,
    read_state_dict,
)
from harness.errors import UserError


class ConversionError(CheckpointError):
    """The source checkpoint does not match the layout the converter knows."""


def discard(state: dict[str, torch.Tensor], patterns: Iterable[str]) -> list[str]:
    """Drop keys matching any documented pattern (regex, anchored at the start); returns them."""
    regs = [re.compile(p) for p in patterns]
    dropped = [k for k in state if any(r.match(k) for r in regs)]
    for k in dropped:
        del state[k]
    return dropped


def rename(
    state: dict[str, torch.Tensor], rules: list[tuple[str, str]], source: str
) -> dict[str, torch.Tensor]:
    """Apply the first matching (regex, replacement) rule to every key; unmatched keys fail."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, torch.Tensor] = {}
    unmatched = []
    for key, value in state.items():
        for reg, repl in compiled:
            if reg.fullmatch(key):
                new = reg.sub(repl, key)
                if new in out:
                    raise ConversionError(f"{source}: two source keys map to {new!r}")
                out[new] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise ConversionError(
            f"{source}: unexpected keys (not part of the known layout): {key_listing(unmatched)}"
        )
    return out


def check_against_model(
    state: dict[str, torch.Tensor], model: torch.nn.Module, source: str
) -> None:
    """The converted keys must be exactly the model's persistent keys, with the same shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    problems = []
    if missing:
        problems.append(f"missing keys: {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {key_listing(unexpected)}")
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in state.keys() & expected.keys()
        if tuple(state[k].shape) != expected[k]
    ]
    if wrong:
        problems.append(f"shape mismatches: {key_listing(wrong)}")
    if problems:
        raise ConversionError(
            f"{source}: converted checkpoint does not fit the target model; " + "; ".join(problems)
        )


def meta_model(model_class: type, config) -> torch.nn.Module:
    """The target architecture without allocating its weights (only names and shapes)."""
    with torch.device("meta"):
        return model_class(config)


def write_checkpoint(
    state: dict[str, torch.Tensor],
    config,
    dst: str | Path,
    manifest: dict,
    companions: Iterable = (),
) -> None:
    """Weights as safetensors shards (+ index), the config, tokenizer/processor, a manifest.

    Writes into a temporary sibling folder and renames it into place, so an interrupted
    conversion never leaves a half-written model folder behind.
    """
    from huggingface_hub import save_torch_state_dict

    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise UserError(f"{dst}: destination exists and is not empty; choose a new folder")
    tmp = dst.with_name(f".{dst.name}.converting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in state.items()}
    save_torch_state_dict(state, str(tmp), max_shard_size="5GB")
    config.save_pretrained(tmp)
    for companion in companions:  # tokenizer, image processor
        companion.save_pretrained(tmp)
    (tmp / "chexbench_conversion.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if dst.exists():
        dst.rmdir()
    tmp.rename(dst)
