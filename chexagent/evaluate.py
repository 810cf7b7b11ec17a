"""A quick multiple-choice check of a CheXagent checkpoint on a CheXbench-format data.json.

Each option is laid out by the training code itself (`chexagent.prompting.build_inputs`, the
layout stage 3 trains on) and scored in one forward pass per item; the decision rule is the
harness's (`harness.scoring`, the official mean log-prob per option token), so the two
packages can only disagree if their layouts do, which
`tests/model_adapters/test_protocol_chexagent.py` checks.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from chexagent.forward import lm_logits, token_logprobs
from chexagent.modeling import CheXagentBundle
from chexagent.prompting import IGNORE_INDEX, build_inputs
from chexagent.training.data import ImageLoader
from harness.data import load_data
from harness.images import ImageResolver
from harness.scoring import HEADLINE, OptionScore, predictions


@torch.no_grad()
def option_scores(
    bundle: CheXagentBundle, pixel_values: torch.Tensor, question: str, options: list[str]
) -> list[OptionScore]:
    """(summed option-token log-prob, token count) per option, one forward pass for all."""
    n_img = pixel_values.shape[0]
    built = [
        build_inputs(
            bundle.tokenizer,
            question,
            o,
            num_images=n_img,
            num_query_tokens=bundle.arch.num_query_tokens,
        )
        for o in options
    ]
    width = max(len(b.input_ids) for b in built)
    pad = bundle.tokenizer.pad_token_id
    ids = torch.tensor([b.input_ids + [pad] * (width - len(b.input_ids)) for b in built])
    labels = torch.tensor([b.labels + [IGNORE_INDEX] * (width - len(b.labels)) for b in built])
    mask = torch.tensor([[1] * len(b.input_ids) + [0] * (width - len(b.input_ids)) for b in built])
    pixels = pixel_values.repeat(len(options), 1, 1, 1)
    logits = lm_logits(bundle.model, ids, mask, pixels)
    total, count = token_logprobs(logits, labels)
    return [OptionScore(float(t), False, int(n)) for t, n in zip(total, count, strict=True)]


def score_data(
    bundle: CheXagentBundle,
    data_json: str | Path,
    limit: int | None = None,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per perception item: its subtask, options, per-option scores and prediction."""
    data = load_data(data_json)
    resolver = ImageResolver(image_root=Path(data_json).resolve().parent)
    images = ImageLoader(bundle.image_processor, cache=False)
    bundle.model.eval()
    rows = []
    items = data.perception[:limit] if limit else data.perception
    for item in tqdm(items, desc="scoring", disable=not show_progress, leave=False):
        paths = item.image_paths[: bundle.arch.max_images]
        pixels = torch.stack([images(str(resolver.resolve(p, item.dataset))) for p in paths])
        scores = option_scores(bundle, pixels, item.question, item.options)
        rows.append(
            {
                "subtask": f"chexbench_{item.task}_{item.dataset}",
                "item_id": item.item_id,
                "options": item.options,
                "answer": item.answer,
                "option_logprobs": [s[0] for s in scores],
                "option_tokens": [s.n_tokens for s in scores],
                "prediction": predictions(scores, item.options)[HEADLINE],
            }
        )
    return rows


def evaluate_data(
    bundle: CheXagentBundle,
    data_json: str | Path,
    limit: int | None = None,
    show_progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Accuracy per `chexbench_<task>_<dataset>` subtask, with the chance level beside it."""
    hits: dict[str, list[int]] = defaultdict(list)
    chance: dict[str, list[float]] = defaultdict(list)
    for row in score_data(bundle, data_json, limit, show_progress):
        hits[row["subtask"]].append(int(row["prediction"] == row["answer"]))
        chance[row["subtask"]].append(1 / len(row["options"]))
    return {
        name: {"accuracy": sum(h) / len(h), "chance": sum(chance[name]) / len(h), "n": len(h)}
        for name, h in sorted(hits.items())
    }
