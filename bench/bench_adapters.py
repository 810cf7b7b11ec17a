"""Per adapter: the engine's shared-prefix scoring against the official per-option full forward.

For every built-in adapter, a tiny random-weight model of its real architecture (written to disk
and loaded by name, as in tests/conftest.py) scores the same phantom perception items twice:

- engine: `CheXbenchLM.loglikelihood`, one prefix pass per item with the KV cache shared by all
  options, each unique image encoded once, batch 8;
- naive: `CheXbenchLM.score_naive` per option, i.e. image(s) + prompt + option in one full
  forward, vision encoder included, which is what the official CheXbench evaluation does.

Both arms run in this process, alternating, best of `--repeats`; the table gives items/s, the
ratio, the vision-encoder calls, the largest log-prob difference, and whether the predicted
option (argmax) is identical on every item. Tiny models make the ratio a floor of what large
models gain: here the per-call overhead, not the vision encoder, dominates a forward.

Run: `.venv/bin/python bench/bench_adapters.py [--adapters chexagent,blip2] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from helpers.tiny_models import TINY_BUILDERS, write_tiny  # noqa: E402  (the tests' builders)

from harness.data import load_data  # noqa: E402
from harness.images import ImageRef  # noqa: E402
from harness.phantom import generate_phantom  # noqa: E402
from model_adapters.engine import CheXbenchLM  # noqa: E402
from model_adapters.registry import get_adapter_class  # noqa: E402


def phantom_requests(folder: Path, n_per_pair: int) -> tuple[list[tuple], list[int]]:
    """lm-eval-style requests for every phantom perception item, and options per item."""
    ph = generate_phantom(
        folder, n_per_pair=n_per_pair, seed=0, image_size=96, n_text=0, n_fairness=0
    )
    reqs, n_opts = [], []
    for item in load_data(ph.data_json).perception:
        images = [ImageRef(str(folder / p)) for p in item.image_paths]
        reqs += [(item.question, " " + o, {"visual": images}) for o in item.options]
        n_opts.append(len(item.options))
    return reqs, n_opts


def argmaxes(scores: list[float], n_opts: list[int]) -> list[int]:
    out, i = [], 0
    for n in n_opts:
        chunk = scores[i : i + n]
        out.append(max(range(n), key=chunk.__getitem__))
        i += n
    return out


def bench_one(name: str, root: Path, reqs: list[tuple], n_opts: list[int], repeats: int) -> dict:
    adapter = get_adapter_class(name)(**write_tiny(name, root / name))
    lm = CheXbenchLM(adapter, batch_size=8, show_progress=False)
    lm.loglikelihood(reqs[:2])  # warm-up: lazy inits, allocator
    lm.score_naive(*reqs[0][:2], reqs[0][2]["visual"])
    engine_s, naive_s = float("inf"), float("inf")
    for _ in range(repeats):
        fresh = CheXbenchLM(adapter, batch_size=8, show_progress=False)  # empty image cache
        t = time.perf_counter()
        engine = [s[0] for s in fresh.loglikelihood(reqs)]
        engine_s = min(engine_s, time.perf_counter() - t)
        t = time.perf_counter()
        naive = [lm.score_naive(c, o, x["visual"])[0] for c, o, x in reqs]
        naive_s = min(naive_s, time.perf_counter() - t)
    n_images = sum(len(x["visual"][: adapter.max_images or None]) for _, _, x in reqs)
    return {
        "adapter": name,
        "items": len(n_opts),
        "options": len(reqs),
        "engine": len(n_opts) / engine_s,
        "naive": len(n_opts) / naive_s,
        "vision_engine": fresh.stats.images_encoded,
        "vision_naive": n_images,
        "max_diff": max(abs(a - b) for a, b in zip(engine, naive, strict=True)),
        "same_pred": argmaxes(engine, n_opts) == argmaxes(naive, n_opts),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapters", default=",".join(TINY_BUILDERS))
    ap.add_argument("--n-per-pair", type=int, default=2, help="phantom items per task/dataset")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: stable timings on a shared machine)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    reqs, n_opts = phantom_requests(root / "phantom", args.n_per_pair)
    table = Table(
        title=f"Engine vs naive per-option forward, tiny models, CPU, "
        f"{args.threads} thread(s), best of {args.repeats}"
    )
    for col in (
        "adapter",
        "items (options)",
        "engine items/s",
        "naive items/s",
        "ratio",
        "vision calls engine/naive",
        "max |Δ log-prob|",
        "same predictions",
    ):
        table.add_column(col, justify="left" if col == "adapter" else "right")
    ok = True
    for name in args.adapters.split(","):
        r = bench_one(name, root / "models", reqs, n_opts, args.repeats)
        ok &= r["same_pred"] and r["max_diff"] < 1e-4
        table.add_row(
            r["adapter"],
            f"{r['items']} ({r['options']})",
            f"{r['engine']:.1f}",
            f"{r['naive']:.1f}",
            f"{r['engine'] / r['naive']:.2f}x",
            f"{r['vision_engine']}/{r['vision_naive']}",
            f"{r['max_diff']:.1e}",
            "yes" if r["same_pred"] else "NO",
        )
    Console(width=140).print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
