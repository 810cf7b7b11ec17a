"""Shared loading chores for adapters: devices, dtypes, model-args, and the missing-weights message."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harness.errors import UnknownArgument, UserError, WeightsMissing

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on GPUs that support it and float32 on CPU (exactness tests use float32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def parse_model_args(arg_string: str | None) -> dict[str, Any]:
    """`k=v,k2=v2` -> dict, with ints/floats/booleans/None parsed and strings kept as given."""
    out: dict[str, Any] = {}
    if not arg_string:
        return out
    for part in arg_string.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise UserError(f"--model-args: expected key=value, got {part!r}")
        key, value = part.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _parse_value(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return parsed if isinstance(parsed, int | float) else value


def weights_missing_message(adapter: str, given: str, hub_id: str, what: str) -> str:
    """The one wording for absent weights: what to download, and where to put it."""
    return (
        f"{adapter}: cannot load weights from {given!r}. Download {what} of the Hugging Face "
        f"repository {hub_id!r} while online (`huggingface-cli download {hub_id} --local-dir "
        f"models/{hub_id.split('/')[-1]}`), then pass pretrained=models/{hub_id.split('/')[-1]} "
        f"in --model-args (or keep the default hub id and let the download land in the Hugging "
        f"Face cache, $HF_HOME)."
    )


def from_pretrained_kwargs(
    adapter: str,
    dtype: torch.dtype,
    device: torch.device,
    load_in_8bit: bool,
    device_map: str | dict | None,
    revision: str | None,
) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` honouring dtype, device map and 8-bit.

    8-bit is how the official evaluation loaded BLIP-2 and InstructBLIP; it needs bitsandbytes
    on a CUDA device, so asking for it anywhere else is an error rather than a silent fp32 run.
    """
    kwargs: dict[str, Any] = {"dtype": dtype}
    if revision:
        kwargs["revision"] = revision
    if device_map:
        kwargs["device_map"] = device_map
    if load_in_8bit:
        if device.type != "cuda":
            raise UserError(
                f"{adapter}: load_in_8bit=true needs a CUDA GPU (bitsandbytes int8 kernels); "
                f"the device here is {device.type!r}. Drop load_in_8bit (and use "
                "dtype=float32 on CPU) or run on a GPU."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError(
                f"{adapter}: load_in_8bit=true needs the `bitsandbytes` package "
                "(`pip install bitsandbytes`)"
            ) from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs.setdefault("device_map", {"": device.index or 0})
    return kwargs


def load_or_explain(
    loader: Any, pretrained: str, adapter: str, hub_id: str, what: str, **kwargs: Any
) -> Any:
    """`loader.from_pretrained(pretrained)`, turning "not there" into a download instruction."""
    from huggingface_hub.errors import HFValidationError

    try:
        return loader.from_pretrained(pretrained, **kwargs)
    except (OSError, HFValidationError) as exc:  # absent folder / not a valid hub id
        raise WeightsMissing(
            f"{weights_missing_message(adapter, pretrained, hub_id, what)} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def place_model(
    model: torch.nn.Module, device: torch.device, device_map: Any, load_in_8bit: bool
) -> torch.device:
    """Move the model unless accelerate placed it; returns where its inputs must go."""
    if not device_map and not load_in_8bit:
        model.to(device)
    model.eval()
    return model.get_input_embeddings().weight.device


def weights_fingerprint(pretrained: str) -> str | None:
    """sha256 over the local weight files (name + bytes), so the run card pins the weights."""
    folder = Path(pretrained)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def check_unused(adapter: str, unused: dict[str, Any], known: Sequence[str] = ()) -> None:
    """Refuse `--model-args` keys the adapter does not take (a typo must not be ignored);
    `known`, when given, is listed so the user sees what would have been accepted."""
    if unused:
        listed = f"; known: {', '.join(known)}" if known else ""
        raise UnknownArgument(f"{adapter}: unknown model args {sorted(unused)}{listed}")
