"""A quick multiple-choice check of a CheXagent checkpoint on a CheXbench-format data.json.

The CheXbench rule: each option is appended to the prompt (`chexagent.prompting.build_inputs`),
scored by the MEAN log-prob of its tokens, and the argmax option is the answer. This is for the
training recipe's own sanity check; the harness's `chexbench run` is the reference scorer.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from chexagent.forward import lm_logits, token_logprobs
from chexagent.modeling import CheXagentBundle
from chexagent.prompting import IGNORE_INDEX, build_inputs
from chexagent.training.data import ImageLoader
from harness.data import load_data
from harness.images import ImageResolver


@torch.no_grad()
def option_scores(bundle: CheXagentBundle, pixel_values: torch.Tensor, question: str,
                  options: list[str]) -> list[float]:
    """Mean option-token log-prob for each option (one forward pass for all options)."""
    n_img = pixel_values.shape[0]
    built = [build_inputs(bundle.tokenizer, question, o, num_images=n_img,
                          num_query_tokens=bundle.arch.num_query_tokens) for o in options]
    width = max(len(b.input_ids) for b in built)
    pad = bundle.tokenizer.pad_token_id
    ids = torch.tensor([b.input_ids + [pad] * (width - len(b.input_ids)) for b in built])
    labels = torch.tensor([b.labels + [IGNORE_INDEX] * (width - len(b.labels)) for b in built])
    mask = torch.tensor([[1] * len(b.input_ids) + [0] * (width - len(b.input_ids))
                         for b in built])
    pixels = pixel_values.repeat(len(options), 1, 1, 1)
    logits = lm_logits(bundle.model, ids, mask, pixels)
    total, count = token_logprobs(logits, labels)
    return (total / count.clamp(min=1)).tolist()


def evaluate_data(bundle: CheXagentBundle, data_json: str | Path, limit: int | None = None,
                  show_progress: bool = False) -> dict[str, dict[str, float]]:
    """Accuracy per `chexbench_<task>_<dataset>` subtask, with the chance level beside it."""
    data = load_data(data_json)
    resolver = ImageResolver(image_root=Path(data_json).resolve().parent)
    images = ImageLoader(bundle.image_processor, cache=False)
    bundle.model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    chance: dict[str, list[float]] = defaultdict(list)
    items = data.perception[:limit] if limit else data.perception
    for item in tqdm(items, desc="scoring", disable=not show_progress, leave=False):
        paths = item.image_paths[: bundle.arch.max_images]
        pixels = torch.stack([images(str(resolver.resolve(p, item.dataset))) for p in paths])
        scores = option_scores(bundle, pixels, item.question, item.options)
        name = f"chexbench_{item.task}_{item.dataset}"
        hits[name].append(int(max(range(len(scores)), key=scores.__getitem__) == item.answer))
        chance[name].append(1 / len(item.options))
    return {name: {"accuracy": sum(h) / len(h), "chance": sum(chance[name]) / len(h),
                   "n": len(h)} for name, h in sorted(hits.items())}
