"""Image prefetch on the CPU: how much of the decode time the engine hides behind the model.

Real CheXbench films are large (MIMIC-CXR-JPG is about 2500 x 3000 JPEG), so decoding and
preprocessing them costs about as much as a small model's forward. This benchmark writes phantom
films as 2048 px JPEGs and measures, in one process on the same items, interleaved per repeat:

- decode: every unique film decoded and preprocessed alone (the engine's own loader, one thread);
- compute: the engine on the same items with the pixels decoded beforehand (its loader replaced
  by a lookup), i.e. the model's share of the wall time; both measured before and after the
  arms below and averaged;
- wall, prefetch off: the engine decoding each batch's films when the batch is scored;
- wall, prefetch on: the engine decoding the next batches while one runs, once with a decode
  thread and once with a decode process (`model_adapters.prefetch` says why it forks).

hidden = (decode + compute - wall) / decode: 1 means the decode cost nothing, 0 that it added
its full time. The model runs on one torch thread and the decoder on one worker, so each can
have one of a 2-core machine's cores; on a machine other work keeps busy they share them, and
the figures say so. Every arm must give bit-identical scores.

    python bench/bench_prefetch.py [--items 48] [--batch-size 4] [--repeats 5] [--vision-layers 30]

Not a test: on a shared machine the figures move with the load (printed before and after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_engine's model shapes
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the device runs from a bare tree

from harness.images import ImageRef  # noqa: E402
from model_adapters.engine import CheXbenchLM, image_fingerprint  # noqa: E402

FILM_PX = 2048
JPEG_QUALITY = 95


class Req:
    def __init__(self, *args):
        self.args = args


def film_jpeg(src: Path, dst: Path, px: int, seed: int) -> int:
    """One phantom film as a `px` px JPEG (q95), resized with Lanczos and given seeded film
    grain (sigma 2 grey levels) so it carries texture like a scanned film rather than a smooth
    upscale; returns its size in bytes. bench_gpu_chexagent8b.py writes its films with it."""
    with Image.open(src) as im:
        grey = np.asarray(im.convert("L").resize((px, px), Image.LANCZOS), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 2.0, grey.shape)
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8), "L").save(
        dst, quality=JPEG_QUALITY
    )
    return dst.stat().st_size


def write_films(folder: Path, n_items: int, seed: int) -> tuple[list[tuple], dict[str, float]]:
    """Phantom perception items whose films are re-encoded as 2048 px JPEGs.

    The phantom renders at 512 px (2048 px rendering takes ~4 s a film); `film_jpeg` makes
    each film a 2048 px JPEG."""
    from harness.data import load_data
    from harness.phantom import generate_phantom

    ph = generate_phantom(
        folder / "phantom",
        n_per_pair=max(2, n_items // 12 + 1),
        seed=seed,
        image_size=512,
        n_text=0,
        n_fairness=0,
    )
    items = [it for it in load_data(ph.data_json).perception if len(it.image_paths) == 1]
    items = items[:n_items]
    if len(items) < n_items:
        raise SystemExit(f"the phantom gave {len(items)} one-image items < {n_items}")
    jpegs: dict[str, ImageRef] = {}
    sizes = []
    out = []
    for it in items:
        src = it.image_paths[0]
        if src not in jpegs:
            path = folder / "films" / f"{len(jpegs):04d}.jpg"
            sizes.append(film_jpeg(ph.out_dir / src, path, FILM_PX, seed + len(jpegs)))
            jpegs[src] = ImageRef(str(path))
        out.append((it.question, it.options, [jpegs[src]]))
    return out, {"films": len(jpegs), "mean_mb": statistics.mean(sizes) / 1e6}


def build_adapter(vision_layers: int):
    """The CheXagent adapter around bench_engine's 'small' shape with `vision_layers` ViT
    layers: the knob that sets compute per image against decode per image."""
    from dataclasses import replace

    from bench_engine import SMALL
    from transformers import Blip2ForConditionalGeneration

    from chexagent.modeling import ARCHS, build_config, build_image_processor
    from model_adapters.chexagent import CheXagentAdapter

    adapter = CheXagentAdapter(pretrained="smoke", dtype="float32", device="cpu")
    shape = replace(
        ARCHS["tiny"], name="bench-prefetch", **{**SMALL, "vision_layers": vision_layers}
    )
    torch.manual_seed(0)
    adapter.model = Blip2ForConditionalGeneration(build_config(shape, adapter.tokenizer)).eval()
    adapter.image_processor = build_image_processor(shape)
    return adapter


def requests(items: list[tuple]) -> list[Req]:
    return [Req(q, " " + o, {"visual": ims}) for q, opts, ims in items for o in opts]


def unique_films(items: list[tuple]) -> list[ImageRef]:
    return list({im.path: im for _, _, ims in items for im in ims}.values())


def engine(adapter, batch_size: int, prefetch: int, executor: str = "threads") -> CheXbenchLM:
    return CheXbenchLM(
        adapter,
        batch_size=batch_size,
        show_progress=False,
        prefetch=prefetch,
        decode_workers=1,
        decode_executor=executor,
    )


def time_decode(lm: CheXbenchLM, films: list[ImageRef]) -> tuple[float, dict[str, torch.Tensor]]:
    t0 = time.perf_counter()
    pixels = {image_fingerprint(f): lm._load_image(f) for f in films}
    return time.perf_counter() - t0, pixels


def time_engine(lm: CheXbenchLM, reqs: list[Req]) -> tuple[float, list]:
    t0 = time.perf_counter()
    scores = lm.loglikelihood(reqs)
    return time.perf_counter() - t0, scores


ARMS = ("off", "threads", "processes")  # prefetch off; on with a decode thread / process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--vision-layers",
        type=int,
        default=30,
        help="ViT depth of the 'small' shape (6): sets compute per image",
    )
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="bench-prefetch-"))
    items, film_info = write_films(folder, args.items, args.seed)
    films = unique_films(items)
    reqs = requests(items)
    adapter = build_adapter(args.vision_layers)
    engine(adapter, args.batch_size, 0).loglikelihood(reqs[: 4 * args.batch_size])  # warm-up

    def decode_and_compute() -> tuple[float, float, list]:
        decode_s, pixels = time_decode(engine(adapter, args.batch_size, 0), films)
        lm = engine(adapter, args.batch_size, args.prefetch)
        lm._images.load = lambda im: pixels[image_fingerprint(im)]  # compute alone
        compute_s, scores = time_engine(lm, reqs)
        return decode_s, compute_s, scores

    rows = []
    same = True
    for rep in range(args.repeats):
        # Decode and compute alone before and after the arms (their mean brackets the drift of
        # a shared machine's load); the arms' order rotates between repeats.
        d0, c0, ref = decode_and_compute()
        row: dict[str, float] = {}
        for arm in ARMS[rep % 3 :] + ARMS[: rep % 3]:
            lm = (
                engine(adapter, args.batch_size, 0)
                if arm == "off"
                else engine(adapter, args.batch_size, args.prefetch, arm)
            )
            row[arm], scores = time_engine(lm, reqs)
            row[f"wait_{arm}"] = lm._images.wait_seconds
            same &= [tuple(s) for s in scores] == [tuple(s) for s in ref]
        d1, c1, _ = decode_and_compute()
        row["decode"], row["compute"] = (d0 + d1) / 2, (c0 + c1) / 2
        for arm in ARMS:
            row[f"hidden_{arm}"] = (row["decode"] + row["compute"] - row[arm]) / row["decode"]
        # The same figure against the prefetch-off run of this repeat, whose decode (the time it
        # waited for pixels) and compute (the rest) ran one after the other, at that moment's load.
        row["hidden_paired"] = row["wait_off"] and (row["off"] - row["processes"]) / row["wait_off"]
        rows.append(row)
        print(
            f"repeat {rep + 1}: decode {d0:.2f}/{d1:.2f}s, compute {c0:.2f}/{c1:.2f}s "
            "(before/after); "
            + "; ".join(
                f"{arm}: wall {row[arm]:.2f}s, hidden {row[f'hidden_{arm}']:.2f}, "
                f"waited {row[f'wait_{arm}']:.2f}s"
                for arm in ARMS
            ),
            flush=True,
        )
    load_after = os.getloadavg()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    n, nf = len(items), film_info["films"]
    print(
        f"\n{n} one-image phantom items ({len(reqs)} options), {nf} films as {FILM_PX} px "
        f"JPEG (q{JPEG_QUALITY}, mean {film_info['mean_mb']:.2f} MB); CheXagent 'small' shape "
        f"with {args.vision_layers} ViT layers, float32, 1 torch thread, 1 decode worker, "
        f"batch {args.batch_size}, prefetch {args.prefetch}; {os.cpu_count()} CPUs, load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"median of {len(rows)} repeats: decode {med('decode'):.2f}s "
        f"({1e3 * med('decode') / nf:.0f} ms/film), compute {med('compute'):.2f}s, "
        f"decode + compute {med('decode') + med('compute'):.2f}s"
    )
    print(f"{'arm':<28}{'wall s':>8}{'hidden':>8}{'waited s':>10}  hidden per repeat")
    names = {
        "off": "prefetch off",
        "threads": "prefetch on, thread",
        "processes": "prefetch on, process",
    }
    for arm in ARMS:
        each = ", ".join(f"{r[f'hidden_{arm}']:.2f}" for r in rows)
        print(
            f"{names[arm]:<28}{med(arm):>8.2f}{med(f'hidden_{arm}'):>8.2f}"
            f"{med(f'wait_{arm}'):>10.2f}  {each}"
        )
    each = ", ".join(f"{r['hidden_paired']:.2f}" for r in rows)
    print(
        f"prefetch on (process) against the prefetch-off run of the same repeat, (wall off - "
        f"wall on) / decode time of the off run: median {med('hidden_paired'):.2f} ({each})"
    )
    print("hidden = (decode + compute - wall) / decode; target >= 0.80")
    print(f"identical scores in every arm and repeat (prefetch off, on, pre-decoded): {same}")


if __name__ == "__main__":
    main()
