"""Engine vs the official evaluation's naive scoring, side by side on the same phantom items.

Naive (official CheXbench code): for every option, one full forward of image + prompt + option,
the vision encoder included. Engine: each unique image encoded once, the prompt prefix run once
per item with a KV cache, all options scored from it, items batched.

    python bench/bench_engine.py [--items 40] [--arch tiny|small] [--batch-size 8]

Prints items/s for both, their ratio, vision-encoder calls per item, and whether the two
agree on every prediction. Not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from harness.data import load_data
from harness.images import ImageRef
from harness.phantom import generate_phantom
from model_adapters.chexagent import CheXagentAdapter
from model_adapters.engine import CheXbenchLM

# A larger-than-tiny shape so the vision tower's share of the work is closer to CheXagent-8b's
# (EVA-CLIP-g at 448 px is ~1B parameters against Mistral-7B's 7B over ~300 tokens).
SMALL = dict(
    image_size=224,
    patch_size=16,
    vision_hidden=256,
    vision_layers=6,
    vision_heads=4,
    vision_intermediate=1024,
    qformer_hidden=128,
    qformer_layers=2,
    qformer_heads=4,
    qformer_intermediate=256,
    num_query_tokens=32,
    text_hidden=256,
    text_layers=4,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate=512,
    max_positions=2048,
)


class Req:
    def __init__(self, *args):
        self.args = args


def build_adapter(arch: str) -> CheXagentAdapter:
    adapter = CheXagentAdapter(pretrained="smoke", dtype="float32", device="cpu")
    if arch == "small":
        from dataclasses import replace

        from transformers import Blip2ForConditionalGeneration

        from chexagent.modeling import ARCHS, build_config, build_image_processor

        shape = replace(ARCHS["tiny"], name="small", **SMALL)
        torch.manual_seed(0)
        adapter.model = Blip2ForConditionalGeneration(build_config(shape, adapter.tokenizer)).eval()
        adapter.image_processor = build_image_processor(shape)
    return adapter


def four_option_items(n: int) -> list[tuple[str, list[str], list[ImageRef]]]:
    folder = tempfile.mkdtemp(prefix="bench-engine-")
    res = generate_phantom(
        folder, n_per_pair=max(4, n // 6 + 1), seed=11, image_size=128, n_text=1, n_fairness=0
    )
    items = [
        (i.question, i.options, [ImageRef(f"{folder}/{p}") for p in i.image_paths])
        for i in load_data(res.data_json).perception
        if len(i.options) == 4 and len(i.image_paths) == 1
    ]
    return items[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--arch", choices=["tiny", "small"], default="small")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    adapter = build_adapter(args.arch)
    items = four_option_items(args.items)
    reqs = [Req(q, " " + o, {"visual": ims}) for q, opts, ims in items for o in opts]

    engine = CheXbenchLM(adapter, batch_size=args.batch_size, show_progress=False)
    engine.loglikelihood(reqs[:8])  # warm-up (allocator, kernels), excluded from timing
    engine = CheXbenchLM(adapter, batch_size=args.batch_size, show_progress=False)
    t0 = time.perf_counter()
    fast = engine.loglikelihood(reqs)
    t_engine = time.perf_counter() - t0

    naive_lm = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    t0 = time.perf_counter()
    slow = [naive_lm.score_naive(r.args[0], r.args[1], r.args[2]["visual"]) for r in reqs]
    t_naive = time.perf_counter() - t0

    def preds(scores):
        out, k = [], 0
        for _, opts, _ in items:
            lls = [s[0] / s.n_tokens for s in scores[k : k + len(opts)]]
            out.append(int(np.argmax(lls)))
            k += len(opts)
        return out

    same = preds(fast) == preds(slow)
    diff = max(abs(a[0] - b[0]) for a, b in zip(fast, slow, strict=True))
    n = len(items)
    print(
        f"model: CheXagent architecture, '{args.arch}' shape, float32, CPU, "
        f"{torch.get_num_threads()} threads; {n} four-option items, batch {args.batch_size}"
    )
    print(f"{'method':<8}{'items/s':>10}{'vision calls/item':>20}{'images encoded/item':>22}")
    print(
        f"{'naive':<8}{n / t_naive:>10.2f}{naive_lm.stats.vision_calls / n:>20.2f}"
        f"{naive_lm.stats.images_encoded / n:>22.2f}"
    )
    print(
        f"{'engine':<8}{n / t_engine:>10.2f}{engine.stats.vision_calls / n:>20.2f}"
        f"{engine.stats.images_encoded / n:>22.2f}"
    )
    print(
        f"speed-up (engine / naive): {t_naive / t_engine:.2f}x   identical predictions: {same}"
        f"   max |log-prob diff|: {diff:.2e}"
    )


if __name__ == "__main__":
    main()
