"""Stage-3 steps per second with and without the frozen-vision query cache, side by side.

Stages 2-3 freeze the ViT and Q-Former, so `QueryCache` encodes each image once; this measures
what that buys (same batches, same math), and checks the losses agree. The cache matters more
as the ViT grows relative to the LM: compare `--arch tiny` with `--arch demo`.
Run: .venv/bin/python bench/bench_train_query_cache.py [--arch tiny|demo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from chexagent.instruct.schema import Instance
from chexagent.modeling import build_model
from chexagent.training.config import load_config
from chexagent.training.trainer import StageTrainer

STEPS = 8


def instances(root: Path, n: int = 64) -> list[Instance]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.fromarray((rng.random((128, 128)) * 255).astype("uint8")).save(path)
        out.append(
            Instance(
                instance_id=f"b/{i}",
                task="ImageClassification",
                dataset="Bench",
                split="train",
                images=[str(path)],
                question="Does this chest X-ray contain cardiomegaly?",
                answer="Yes" if i % 2 else "No",
                options=["Yes", "No"],
                template_format="disease_binary",
                template_index=0,
            )
        )
    return out


def run(data: list[Instance], out: Path, cache: bool, arch: str) -> tuple[float, list[float]]:
    cfg = (
        load_config("tiny")
        .stages[3]
        .model_copy(update={"max_steps": STEPS, "micro_batch": 16, "global_batch": 16})
    )
    start = time.perf_counter()
    trainer = StageTrainer(
        3, cfg, build_model(arch, 0), data, out, show_progress=False, cache_queries=cache
    )
    result = trainer.train(export=False)
    return STEPS / (time.perf_counter() - start), result.losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["tiny", "demo"], default="demo")
    arch = parser.parse_args().arch
    with tempfile.TemporaryDirectory() as tmp:
        data = instances(Path(tmp))
        cached, loss_c = run(data, Path(tmp) / "c", cache=True, arch=arch)
        plain, loss_p = run(data, Path(tmp) / "p", cache=False, arch=arch)
    print(
        f"stage 3, {arch}, {STEPS} steps x 16: cached {cached:.2f} steps/s, "
        f"uncached {plain:.2f} steps/s, ratio {cached / plain:.2f}x"
    )
    diff = max(abs(a - b) for a, b in zip(loss_c, loss_p, strict=True))
    print(f"max |loss difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
