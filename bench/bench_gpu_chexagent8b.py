"""A CheXagent-8b-shaped random-weight model in bf16 on one GPU: engine vs naive, and the FLOP floor.

Speed, not accuracy: the weights are random, the shapes are the paper's (`ARCHS["paper"]`:
EVA-CLIP-g-like ViT at 448 px, 12-layer Q-Former with 128 queries, Mistral-7B), so the work per
item is what CheXagent-8b does. Two steps, because the GPU machine has neither pydantic nor
network access:

    # here (CPU): phantom items -> items.json (uses harness.data, which needs pydantic)
    .venv/bin/python bench/bench_gpu_chexagent8b.py prepare --out .gpu_bench/phantom
    # on the GPU machine: read items.json with plain json, time, print the table
    python bench/bench_gpu_chexagent8b.py run --items-json .gpu_bench/phantom/items.json

`run --arch tiny --device cpu --dtype float32` exercises the whole path on a laptop.
docs/benchmarks.md has the numbers and the exact device command.

What `run` measures, all in one process on the same items:
- engine: `CheXbenchLM.loglikelihood` over every item (fresh encoding cache per timed run,
  warm-up excluded), for each batch size, twice;
- naive: `CheXbenchLM.score_naive` per option (image + prompt + option in one full forward,
  as the official evaluation does) on the first `--naive-items`, with the engine timed on the
  same subset for the ratio;
- the FLOP floor: forward FLOPs no scoring method can avoid (see `floor_flops`), against the
  measured time and against the GPU's bf16 matrix rate measured in the same run;
- FLOPs the engine and the naive path actually execute (torch's FlopCounterMode on a subset),
  and a check of the analytic count against FlopCounterMode on one full forward.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the device runs from a bare tree

from chexagent.modeling import ARCHS, CheXagentArch  # noqa: E402
from harness.images import ImageRef  # noqa: E402
from harness.io import atomic_write_json  # noqa: E402

DATASHEET_BF16_DENSE = 989.4e12  # H100/H200 SXM dense bf16, vendor datasheet


# ----- items -----------------------------------------------------------------------------------
def prepare(out: Path, n_items: int, n_per_pair: int, image_size: int, seed: int) -> Path:
    """Phantom perception items in a seeded random order, so any prefix is a fair task mix."""
    from harness.data import load_data
    from harness.phantom import generate_phantom

    ph = generate_phantom(out, n_per_pair=n_per_pair, seed=seed, image_size=image_size,
                          n_text=0, n_fairness=0)
    items = [{"item_id": i.item_id, "question": i.question, "options": i.options,
              "images": i.image_paths} for i in load_data(ph.data_json).perception]
    if len(items) < n_items:
        raise SystemExit(f"phantom gave {len(items)} perception items < {n_items}; "
                         "raise --n-per-pair")
    random.Random(seed).shuffle(items)
    path = out / "items.json"
    atomic_write_json(path, {"seed": seed, "n_per_pair": n_per_pair, "image_size": image_size,
                             "items": items[:n_items]})
    return path


@dataclass
class Item:
    item_id: str
    question: str
    options: list[str]
    images: list[ImageRef]

    def requests(self) -> list[tuple]:
        # The CheXbench tasks' request shape: context = question, continuation = " " + option.
        return [(self.question, " " + o, {"visual": self.images}) for o in self.options]


def load_items(path: Path) -> tuple[dict[str, Any], list[Item]]:
    spec = json.loads(path.read_text())
    root = path.parent
    items = [Item(d["item_id"], d["question"], d["options"],
                  [ImageRef(str(root / p)) for p in d["images"]]) for d in spec["items"]]
    return spec, items


def flat_requests(items: list[Item]) -> list[tuple]:
    return [r for it in items for r in it.requests()]


def mix(items: list[Item]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        key = f"{len(it.options)} options, {len(it.images)} image(s)"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


# ----- FLOPs -------------------------------------------------------------------------------------
def image_flops(a: CheXagentArch, attention: bool = True) -> int:
    """ViT over 1024 patches + CLS, Q-Former (128 queries, cross-attention every 2nd layer onto
    the 1025 ViT tokens), and the linear bridger: 2 x multiply-adds of every matrix product.
    `attention=False` leaves out the score and value products (see `check_flop_model`)."""
    att = int(attention)
    patches = (a.image_size // a.patch_size) ** 2
    tv, dv, fv = patches + 1, a.vision_hidden, a.vision_intermediate
    f = 2 * patches * (3 * a.patch_size ** 2) * dv  # patch embedding (a conv)
    f += a.vision_layers * (2 * tv * (4 * dv * dv + 2 * dv * fv) + att * 4 * tv * tv * dv)
    q, dq, fq = a.num_query_tokens, a.qformer_hidden, a.qformer_intermediate
    for layer in range(a.qformer_layers):
        f += 2 * q * 4 * dq * dq + att * 4 * q * q * dq + 2 * q * 2 * dq * fq
        if layer % 2 == 0:  # transformers' Blip2QFormerConfig.cross_attention_frequency = 2
            f += 2 * q * 2 * dq * dq + 2 * tv * 2 * dv * dq + att * 4 * q * tv * dq
    return f + 2 * q * dq * a.text_hidden


def lm_flops(a: CheXagentArch, new: int, past: int, logit_rows: int, causal: bool = True,
             vocab: int = 32000, attention: bool = True) -> int:
    """Mistral over `new` tokens after `past` cached ones. `causal`: each token's attention
    covers only the keys at or before it (the minimum); False counts the full new x (past+new)
    score matrix, which is what attention kernels are credited with by FlopCounterMode."""
    d, f = a.text_hidden, a.text_intermediate
    head_dim = d // a.text_heads
    dq, dkv = a.text_heads * head_dim, a.text_kv_heads * head_dim
    linear = 2 * new * (d * dq + 2 * d * dkv + dq * d + 3 * d * f)
    keys = new * past + (new * (new + 1) // 2 if causal else new * new)
    attn = 4 * keys * dq * int(attention)
    return a.text_layers * (linear + attn) + 2 * logit_rows * d * vocab


def item_token_counts(lm: Any, item: Item) -> tuple[int, int, list[int]]:
    """(images used, prefix length, option lengths) exactly as the engine tokenises them."""
    from model_adapters.base import ImageSlot

    images = lm._limit_images(list(item.images))
    parts, last = lm._prefix_parts(item.question, len(images))
    splits = [lm.split_continuation(last, " " + o) for o in item.options]
    q = lm.adapter.model.config.num_query_tokens
    prefix = sum(q if isinstance(p, ImageSlot) else len(p) for p in parts) + len(splits[0][0])
    return len(images), prefix, [len(s[1]) for s in splits]


def floor_flops(a: CheXagentArch, lm: Any, items: list[Item]) -> dict[str, int]:
    """The forward FLOPs any exact scoring of these items must spend: each unique image through
    ViT + Q-Former + bridger once; the prefix through Mistral once (logits at its last position
    only); per option, only its tokens but the last (their logits score the next token), against
    the cached prefix; causal attention. Padding, norms, softmax and activations not counted."""
    vocab = lm.adapter.model.config.text_config.vocab_size
    unique = {im.fingerprint for it in items for im in lm._limit_images(list(it.images))}
    vision = len(unique) * image_flops(a)
    text = 0
    for it in items:
        _, prefix, opts = item_token_counts(lm, it)
        text += lm_flops(a, prefix, 0, 1, vocab=vocab)
        text += sum(lm_flops(a, n - 1, prefix, n - 1, vocab=vocab) for n in opts)
    return {"unique_images": len(unique), "vision": vision, "text": text, "total": vision + text}


def check_flop_model(a: CheXagentArch, lm: Any, item: Item) -> dict[str, float]:
    """Analytic count of one naive full forward (full attention, logits at every position)
    against torch's FlopCounterMode on the real model: validates `image_flops`/`lm_flops`.
    Both figures: with and without the fused attention that `flop_counter` maps."""
    n_img, prefix, opts = item_token_counts(lm, item)
    vocab = lm.adapter.model.config.text_config.vocab_size
    total = prefix + opts[0]
    analytic = n_img * image_flops(a) + lm_flops(a, total, 0, total, causal=False, vocab=vocab)
    no_sdpa = (n_img * image_flops(a, attention=False) + lm_flops(
        a, total, 0, total, causal=False, vocab=vocab, attention=False))
    vit_tokens = (a.image_size // a.patch_size) ** 2 + 1
    vit_attn = a.vision_layers * 4 * vit_tokens ** 2 * a.vision_hidden
    qformer_attn = n_img * (image_flops(a) - image_flops(a, attention=False) - vit_attn)
    counted = counted_flops(lambda: lm.score_naive(item.question, " " + item.options[0],
                                                   item.images))
    return {"analytic": analytic, "flop_counter": counted, "ratio": counted / analytic,
            "analytic_eager_attention_only": no_sdpa + qformer_attn,
            "ratio_eager_attention_only": counted / (no_sdpa + qformer_attn)}


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q.K^T and A.V of fused attention, grouped-query keys included (torch's own formula
    asserts equal head counts, and Mistral has 8 key heads for 32 query heads)."""
    b, h, lq, d = query_shape
    return 2 * b * h * lq * key_shape[-2] * (d + value_shape[-1])


def flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    names = ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")
    mapping = {getattr(torch.ops.aten, n): _sdpa_flops for n in names
               if hasattr(torch.ops.aten, n)}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def counted_flops(fn) -> int:
    with flop_counter() as fc:
        fn()
    return fc.get_total_flops()


# ----- model -------------------------------------------------------------------------------------
def build_adapter(arch_name: str, device: str, dtype: torch.dtype, seed: int):
    """Our CheXagent adapter around a random model of `arch_name`, built directly on `device`
    in `dtype` (no float32 CPU copy of 8B parameters)."""
    from transformers import Blip2ForConditionalGeneration

    from chexagent.modeling import build_config, build_image_processor
    from model_adapters.chexagent import CheXagentAdapter

    arch = ARCHS[arch_name]
    adapter = CheXagentAdapter(pretrained="smoke", dtype="float32", device="cpu")
    # An ordinary ViT init (0.02): BLIP-2's 1e-10 default would time near-zero weights.
    config = build_config(arch, adapter.tokenizer)
    config.vision_config.initializer_range = 0.02
    torch.manual_seed(seed)
    with torch.device(device):
        model = Blip2ForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.requires_grad_(False)  # inference only; FlopCounterMode's module hooks need it too
    adapter.model = model
    adapter.image_processor = build_image_processor(arch)
    adapter.device = torch.device(device)
    adapter.dtype = dtype
    adapter.num_query_tokens = config.num_query_tokens
    return arch, adapter


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def matmul_rate(device: str) -> float | None:
    """bf16 8192^3 matrix product on random data, median of 10 after 3 warm-ups (METHOD.md)."""
    if not device.startswith("cuda"):
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n ** 3 / statistics.median(times)


# ----- timing ------------------------------------------------------------------------------------
def time_engine(adapter: Any, reqs: list[tuple], batch_size: int, device: str
                ) -> tuple[float, Any, list]:
    from model_adapters.engine import CheXbenchLM

    lm = CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)
    sync(device)
    t0 = time.perf_counter()
    scores = lm.loglikelihood(reqs)
    sync(device)
    return time.perf_counter() - t0, lm.stats, scores


def time_naive(adapter: Any, reqs: list[tuple], device: str) -> tuple[float, Any, list]:
    from model_adapters.engine import CheXbenchLM

    lm = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    sync(device)
    t0 = time.perf_counter()
    scores = [lm.score_naive(c, o, v["visual"]) for c, o, v in reqs]
    sync(device)
    return time.perf_counter() - t0, lm.stats, scores


def preprocess_seconds(adapter: Any, items: list[Item]) -> float:
    """Decoding and resizing the unique images on the CPU, which the engine's timing includes
    and the FLOP floor does not."""
    from model_adapters.engine import load_rgb

    unique = {im.fingerprint: im for it in items for im in it.images}
    t0 = time.perf_counter()
    for im in unique.values():
        adapter.preprocess(load_rgb(im))
    return time.perf_counter() - t0


def argmaxes(scores: list, items: list[Item]) -> list[int]:
    out, k = [], 0
    for it in items:
        lls = [s[0] / s.n_tokens for s in scores[k: k + len(it.options)]]
        out.append(max(range(len(lls)), key=lls.__getitem__))
        k += len(it.options)
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "tokenizers", "huggingface_hub", "lm_eval", "numpy", "pillow"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["cuda"] = str(torch.version.cuda)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model_adapters.engine import CheXbenchLM

    device, dtype = args.device, getattr(torch, args.dtype)
    spec, items = load_items(Path(args.items_json))
    items = items[: args.items]
    result: dict[str, Any] = {"versions": versions(), "arch": args.arch, "dtype": args.dtype,
                              "device": device, "items": len(items), "mix": mix(items),
                              "phantom": {k: spec[k] for k in ("seed", "n_per_pair", "image_size")},
                              "model_seed": args.seed, "engine": [], "naive": {}}
    out = Path(args.out) if args.out else None

    def save() -> None:
        if out is not None:
            atomic_write_json(out, result)

    print("versions:", json.dumps(result["versions"]), flush=True)
    print(f"items: {len(items)}  mix: {json.dumps(result['mix'])}", flush=True)
    result["matmul_flops_per_s"] = matmul_rate(device)
    t0 = time.perf_counter()
    arch, adapter = build_adapter(args.arch, device, dtype, args.seed)
    sync(device)
    result["build_s"] = time.perf_counter() - t0
    result["parameters"] = sum(p.numel() for p in adapter.model.parameters())
    result["weights_gib"] = (torch.cuda.memory_allocated() / 2**30
                             if device.startswith("cuda") else None)
    cfg = adapter.model.config
    result["attn_implementation"] = {
        "vision": getattr(cfg.vision_config, "_attn_implementation", None),
        "qformer": getattr(cfg.qformer_config, "_attn_implementation", None),
        "text": getattr(cfg.text_config, "_attn_implementation", None)}
    print(f"model: {result['parameters'] / 1e9:.3f}B parameters, built in "
          f"{result['build_s']:.1f}s, attention {result['attn_implementation']}", flush=True)
    save()

    accountant = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    floor = floor_flops(arch, accountant, items)
    result["floor"] = floor
    save()

    result["cpu_preprocess_s"] = preprocess_seconds(adapter, items)
    print(f"CPU image load + preprocessing of the {floor['unique_images']} unique images alone: "
          f"{result['cpu_preprocess_s']:.2f}s", flush=True)
    reqs = flat_requests(items)
    for bs in args.batch_sizes:
        time_engine(adapter, flat_requests(items[: 2 * bs]), bs, device)  # warm-up
        runs = []
        for _ in range(args.repeats):
            reset_peak(device)
            secs, stats, scores = time_engine(adapter, reqs, bs, device)
            runs.append({"seconds": secs, "items_per_s": len(items) / secs,
                         "peak_gib": peak_gib(device), "stats": stats.as_dict(),
                         "finite": all(abs(s[0]) < float("inf") for s in scores)})
            print(f"engine batch {bs}: {len(items) / secs:.2f} items/s ({secs:.2f}s)", flush=True)
        result["engine"].append({"batch_size": bs, "runs": runs})
        save()

    sub = items[: args.naive_items]
    sub_reqs = flat_requests(sub)
    bs = args.batch_sizes[0]
    time_naive(adapter, sub_reqs[:1], device)  # warm-up of the batch-1 shapes
    reset_peak(device)
    n_secs, n_stats, n_scores = time_naive(adapter, sub_reqs, device)
    n_peak = peak_gib(device)
    reset_peak(device)
    e_secs, e_stats, e_scores = time_engine(adapter, sub_reqs, bs, device)
    sub_floor = floor_flops(arch, accountant, sub)
    result["naive"] = {
        "items": len(sub), "mix": mix(sub), "engine_batch_size": bs,
        "naive_seconds": n_secs, "naive_items_per_s": len(sub) / n_secs, "naive_peak_gib": n_peak,
        "naive_stats": n_stats.as_dict(), "engine_seconds": e_secs,
        "engine_items_per_s": len(sub) / e_secs, "engine_stats": e_stats.as_dict(),
        "speedup": n_secs / e_secs,
        "same_predictions": argmaxes(n_scores, sub) == argmaxes(e_scores, sub),
        "max_abs_logprob_diff": max(abs(a[0] - b[0]) for a, b in zip(n_scores, e_scores,
                                                                      strict=True)),
        "floor": sub_floor}
    print(f"naive on {len(sub)} items: {len(sub) / n_secs:.2f} items/s; engine on the same: "
          f"{len(sub) / e_secs:.2f} items/s; ratio {n_secs / e_secs:.2f}x", flush=True)
    save()

    # FLOP accounting last: a counter failure must not cost the timings above.
    try:
        result["flop_check"] = check_flop_model(arch, accountant, items[0])
        flop_items = sub[: args.flop_items]
        flop_reqs = flat_requests(flop_items)
        result["executed_flops"] = {
            "items": len(flop_items),
            "engine": counted_flops(lambda: CheXbenchLM(adapter, batch_size=bs,
                                                        show_progress=False
                                                        ).loglikelihood(flop_reqs)),
            "naive": counted_flops(lambda: time_naive(adapter, flop_reqs, device)),
            "floor": floor_flops(arch, accountant, flop_items)["total"]}
    except Exception as exc:  # noqa: BLE001 - recorded in the results, not swallowed
        result["flop_counter_error"] = f"{type(exc).__name__}: {exc}"
        print("FLOP counter failed:", result["flop_counter_error"], flush=True)
    save()
    return result


# ----- report ------------------------------------------------------------------------------------
def report(r: dict[str, Any]) -> str:
    n = r["items"]
    per_item = r["floor"]["total"] / n
    peak_meas = r.get("matmul_flops_per_s")
    lines = [f"CheXagent-8b-shaped ({r['arch']}), random weights, {r['dtype']}, {r['device']}, "
             f"{r['versions'].get('gpu', 'cpu')}; {n} phantom items {r['mix']}",
             f"parameters {r['parameters'] / 1e9:.3f}B; FLOP floor {per_item / 1e12:.3f} "
             f"TFLOP/item (vision {r['floor']['vision'] / n / 1e12:.3f} over "
             f"{r['floor']['unique_images']} unique images, text {r['floor']['text'] / n / 1e12:.3f})"]
    if peak_meas:
        lines.append(f"bf16 matmul measured {peak_meas / 1e12:.0f} TFLOP/s; datasheet "
                     f"{DATASHEET_BF16_DENSE / 1e12:.0f}; floor time/item "
                     f"{per_item / peak_meas * 1e3:.2f} ms (measured rate), "
                     f"{per_item / DATASHEET_BF16_DENSE * 1e3:.2f} ms (datasheet)")
    lines.append(f"{'arm':<22}{'items/s':>9}{'vision calls/item':>19}{'imgs enc/item':>15}"
                 f"{'peak GiB':>10}{'TFLOP/s':>9}{'% meas':>8}{'% sheet':>8}")

    def row(name, items_s, stats, items, peak, floor_total):
        achieved = floor_total / (items / items_s)
        pm = f"{100 * achieved / peak_meas:>8.1f}" if peak_meas else f"{'-':>8}"
        pk = f"{peak:>10.1f}" if peak is not None else f"{'-':>10}"
        return (f"{name:<22}{items_s:>9.2f}{stats['vision_calls'] / items:>19.3f}"
                f"{stats['images_encoded'] / items:>15.3f}{pk}{achieved / 1e12:>9.1f}{pm}"
                f"{100 * achieved / DATASHEET_BF16_DENSE:>8.1f}")

    for e in r["engine"]:
        for k, run_ in enumerate(e["runs"]):
            lines.append(row(f"engine b{e['batch_size']} run{k + 1} ({n})", run_["items_per_s"],
                             run_["stats"], n, run_["peak_gib"], r["floor"]["total"]))
    nv = r.get("naive") or {}
    if nv:
        m = nv["items"]
        lines.append(row(f"naive ({m})", nv["naive_items_per_s"], nv["naive_stats"], m,
                         nv["naive_peak_gib"], nv["floor"]["total"]))
        lines.append(row(f"engine b{nv['engine_batch_size']} ({m})", nv["engine_items_per_s"],
                         nv["engine_stats"], m, None, nv["floor"]["total"]))
        lines.append(f"engine/naive on the same {m} items: {nv['speedup']:.2f}x; identical "
                     f"predictions {nv['same_predictions']}; max |log-prob diff| "
                     f"{nv['max_abs_logprob_diff']:.3g}")
    ex = r.get("executed_flops")
    if ex:
        lines.append(f"executed FLOPs (FlopCounterMode, {ex['items']} items) / floor: engine "
                     f"{ex['engine'] / ex['floor']:.2f}, naive {ex['naive'] / ex['floor']:.2f}")
    lines.append(f"CPU image decode + preprocessing alone: {r['cpu_preprocess_s']:.2f}s for "
                 f"{r['floor']['unique_images']} images (inside every engine run's time)")
    fc = r.get("flop_check")
    if fc:
        lines.append(f"FlopCounterMode / analytic FLOPs on one full forward: {fc['ratio']:.4f}")
    lines.append("TFLOP/s = floor FLOPs / measured time (useful work rate); % of the bf16 rate "
                 "measured in this run and of the datasheet's 989 TFLOP/s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write phantom items.json (needs pydantic: run here)")
    p.add_argument("--out", default=".gpu_bench/phantom")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--n-per-pair", type=int, default=15)
    p.add_argument("--image-size", type=int, default=256,
                   help="PNG size; the processor resizes to 448 (keeps the carried tree small)")
    p.add_argument("--seed", type=int, default=11)
    r = sub.add_parser("run", help="time engine and naive scoring, compute the FLOP floor")
    r.add_argument("--items-json", default=".gpu_bench/phantom/items.json")
    r.add_argument("--items", type=int, default=200)
    r.add_argument("--arch", choices=sorted(ARCHS), default="paper")
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    r.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16])
    r.add_argument("--repeats", type=int, default=2)
    r.add_argument("--naive-items", type=int, default=40)
    r.add_argument("--flop-items", type=int, default=8)
    r.add_argument("--seed", type=int, default=0, help="model init seed (recorded)")
    r.add_argument("--out", default=None, help="results JSON (written after every stage)")
    args = ap.parse_args()
    if args.cmd == "prepare":
        print(prepare(Path(args.out), args.items, args.n_per_pair, args.image_size, args.seed))
        return
    torch.set_grad_enabled(False)
    print(report(run(args)))


if __name__ == "__main__":
    main()
