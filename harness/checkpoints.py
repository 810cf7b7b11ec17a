"""Reading released checkpoints safely, for every loader and converter.

Pickled checkpoints (`.pth`/`.bin`) are read with `weights_only=True`, so a checkpoint can never
run code; anything but a flat mapping of names to tensors is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import UserError, WeightsMissing

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class CheckpointError(UserError):
    """A checkpoint file that is not a plain mapping of parameter names to tensors."""


def key_listing(keys: Iterable[str], limit: int = 12) -> str:
    """Sorted key names for an error message, cut after `limit` (state dicts run to thousands)."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """One checkpoint file, or every weight shard in a folder, as one flat state dict.

    MiniGPT-4/LAVIS checkpoints nest their weights under "model"; that level is unwrapped.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors")) or sorted(
            p
            for p in path.iterdir()
            if p.suffix in PICKLE_SUFFIXES and "training_args" not in p.name
        )
        if not shards:
            raise WeightsMissing(f"{path}: no *.safetensors or *.bin weight files in this folder")
        merged: dict[str, Any] = {}
        for shard in shards:
            part = read_state_dict(shard)
            clash = merged.keys() & part.keys()
            if clash:
                raise CheckpointError(
                    f"{shard}: keys also present in another shard: {key_listing(clash)}"
                )
            merged.update(part)
        return merged
    if not path.is_file():
        raise WeightsMissing(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: unknown checkpoint format (expected .safetensors or "
            f"{'/'.join(PICKLE_SUFFIXES)})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError and friends for non-tensor pickles
        raise CheckpointError(
            f"{path}: not a plain tensor checkpoint ({exc.__class__.__name__}); "
            "refusing to unpickle arbitrary objects"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return dict(obj)
