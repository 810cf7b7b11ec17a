"""Strict renaming of a released state dict onto our modules: every key is accounted for.

Released checkpoints carry keys we map, keys we deliberately drop (training-only heads, buffers
that current transformers recomputes) and aliases (one tensor saved under two names because a
module was registered twice). Anything else, and anything required but absent, is an error that
names the keys: a silent `strict=False` is how an image tower ends up randomly initialised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from model_adapters.converters.common import key_listing


class CheckpointKeyError(ValueError):
    """The checkpoint's keys do not match the layout the loader expects."""


@dataclass
class KeyPlan:
    """How a released layout maps to ours."""

    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> canonical source key
    dropped_prefixes: tuple[str, ...] = ()
    dropped_suffixes: tuple[str, ...] = ()

    def is_dropped(self, key: str) -> bool:
        return key.startswith(self.dropped_prefixes) or key.endswith(self.dropped_suffixes)


@dataclass
class Conversion:
    state_dict: dict[str, torch.Tensor]
    dropped: list[str]


def convert_state_dict(
    source: Mapping[str, torch.Tensor], plan: KeyPlan, origin: str
) -> Conversion:
    """Rename `source` by `plan`; refuse unexpected or missing keys, naming them."""
    mapping = {**plan.optional, **plan.required}
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unexpected: list[str] = []
    for key, tensor in source.items():
        if key in mapping:
            out[mapping[key]] = tensor
        elif key in plan.aliases:
            canonical = plan.aliases[key]
            if canonical in source:
                if not torch.equal(source[canonical], tensor):
                    raise CheckpointKeyError(
                        f"{origin}: {key!r} should be the same tensor as {canonical!r} (one "
                        "module registered under two names) but the values differ"
                    )
            else:
                out[mapping[canonical]] = tensor
        elif plan.is_dropped(key):
            dropped.append(key)
        else:
            unexpected.append(key)
    present = set(source)
    by_canonical: dict[str, list[str]] = {}
    for alias, canonical in plan.aliases.items():
        by_canonical.setdefault(canonical, []).append(alias)
    missing = [
        k
        for k in plan.required
        if k not in present and not any(a in present for a in by_canonical.get(k, []))
    ]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {key_listing(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {key_listing(missing)}")
    if problems:
        raise CheckpointKeyError(
            f"{origin}: does not match the expected layout; " + "; ".join(problems)
        )
    return Conversion(out, dropped)


def check_complete(model: torch.nn.Module, provided: Iterable[str], origin: str) -> None:
    """Every parameter and persistent buffer of `model` must have been provided."""
    expected = set(model.state_dict().keys())
    provided = set(provided)
    missing = expected - provided
    extra = provided - expected
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no weights for {len(missing)} key(s): {key_listing(missing)}")
        if extra:
            parts.append(f"{len(extra)} key(s) with no place in the model: {key_listing(extra)}")
        raise CheckpointKeyError(f"{origin}: " + "; ".join(parts))


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or a torch file read with weights_only (no arbitrary pickle)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if (
        isinstance(obj, Mapping)
        and "model_state_dict" in obj
        and not any(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        obj = obj["model_state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointKeyError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return dict(obj)
