"""Shared loading chores for adapters: devices, dtypes, model-args, and the missing-weights message."""

from __future__ import annotations

import ast
from typing import Any

import torch

from harness.errors import UserError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}


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
