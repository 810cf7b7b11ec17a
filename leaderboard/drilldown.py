"""Per-item views of a local run's samples JSONL (what the model saw, scored and chose)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from harness.images import ImageResolver
from harness.io import read_jsonl

IMAGE_ROOT_ENV = "CHEXBENCH_IMAGE_ROOT"


def load_samples(path: Path, subtask: str | None = None) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    return [r for r in rows if subtask is None or r.get("task") == subtask]


def option_scores(row: dict[str, Any]) -> pd.DataFrame:
    """One line per option: summed log-prob, token count and the mean (the headline rule)."""
    options = row.get("options") or []
    logprobs = row.get("logprobs") or [math.nan] * len(options)
    counts = row.get("token_counts") or [None] * len(options)
    out = []
    for i, option in enumerate(options):
        lp = logprobs[i] if i < len(logprobs) else math.nan
        n = counts[i] if i < len(counts) else None
        out.append(
            {
                "option": f"({chr(65 + i)}) {option}",
                "sum log-prob": lp,
                "tokens": n,
                "mean log-prob": (lp / n) if n and lp is not None else math.nan,
                "answer": "✓" if i == row.get("answer") else "",
                "chosen": "◀" if i == row.get("prediction") else "",
            }
        )
    return pd.DataFrame(out)


def option_text(row: dict[str, Any], index: Any) -> str:
    options = row.get("options")
    if isinstance(index, int) and isinstance(options, list) and 0 <= index < len(options):
        return str(options[index])
    return "" if index is None else str(index)


def resolve_image(raw: str, results_dir: Path, dataset: str | None = None) -> Path | None:
    """The first existing file for a path as written in the samples: through the harness's
    image mapping under CHEXBENCH_IMAGE_ROOT, or beside the results file. A path that leads
    anywhere else (absolute, `..`, a symlink out) is not shown: samples are uploaders' text,
    and the page must not display files from the server's disk."""
    root = os.environ.get(IMAGE_ROOT_ENV)
    allowed = [Path(results_dir).resolve()] + ([Path(root).expanduser().resolve()] if root else [])
    resolver = ImageResolver.from_args(root)
    candidates = ([resolver.resolve(raw, dataset)] if root else []) + [Path(results_dir) / raw]
    for candidate in candidates:
        real = candidate.resolve()
        if real.is_file() and any(real.is_relative_to(base) for base in allowed):
            return real
    return None
