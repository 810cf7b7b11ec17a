"""`chexbench check-adapter`: is a model adapter wired correctly before its numbers mean anything?

Peer harnesses shipped adapters that returned a loss instead of a log-prob, that never showed
the image to the model, or that scored tokens other than the option's. Each check below fails
on one of those bugs; together they are the bar for submitting a new adapter.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from harness.images import ImageRef
from model_adapters.engine import CheXbenchLM

PLANT_BONUS = 40.0


@dataclass
class CheckResult:
    name: str
    passed: bool
    figure: str  # the measured number(s) behind the verdict
    detail: str = ""


@dataclass
class ConformanceReport:
    adapter: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


class _Req:
    def __init__(self, *args: Any):
        self.args = args


def phantom_items(n_items: int = 8, seed: int = 0) -> list[tuple[str, list[str], list[Any]]]:
    """(question, options, images) from a small phantom set, across several tasks."""
    from harness.data import load_data
    from harness.phantom import generate_phantom

    folder = Path(tempfile.mkdtemp(prefix="chexbench-conformance-"))
    res = generate_phantom(folder, n_per_pair=1, seed=seed, image_size=96, n_text=1,
                           n_fairness=0)
    data = load_data(res.data_json)
    items = []
    for item in data.perception[: n_items]:
        images = [ImageRef(str(folder / p)) for p in item.image_paths]
        items.append((item.question, item.options, images))
    return items


def _requests(items, image_override: Any = None) -> list[_Req]:
    return [_Req(q, " " + o, {"visual": [image_override] * len(ims) if image_override else ims})
            for q, opts, ims in items for o in opts]


def _max_diff(a: list, b: list) -> float:
    return max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True))


def output_layer(adapter: Any) -> torch.nn.Module:
    """The module producing vocabulary logits, where the sign check plants its answer."""
    hook = getattr(adapter, "output_layer", None)
    if callable(hook):
        return hook()
    model = getattr(adapter, "model", None)
    if model is not None and hasattr(model, "get_output_embeddings"):
        layer = model.get_output_embeddings()
        if layer is not None:
            return layer
    raise TypeError(f"{adapter.name}: cannot find the output layer; define `output_layer()`")


@contextlib.contextmanager
def planted(adapter: Any, token_id: int) -> Iterator[None]:
    """Rig the model itself (its logit layer) so `token_id` becomes near-certain."""

    def bump(_module, _inputs, output):
        output = output.clone()
        output[..., token_id] += PLANT_BONUS
        return output

    handle = output_layer(adapter).register_forward_hook(bump)
    try:
        yield
    finally:
        handle.remove()


def run_checks(adapter: Any, items: list | None = None, tolerance: float = 1e-4
               ) -> ConformanceReport:
    items = items or phantom_items()
    report = ConformanceReport(adapter.name)
    add = report.checks.append
    reqs = _requests(items)

    def engine(batch_size: int) -> CheXbenchLM:
        return CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)

    start = time.perf_counter()
    first = engine(8).loglikelihood(reqs)
    seconds = time.perf_counter() - start
    second = engine(8).loglikelihood(reqs)
    d = _max_diff(first, second)
    add(CheckResult("determinism (two runs)", d == 0.0, f"max |diff| = {d:.2e}"))

    one = engine(1).loglikelihood(reqs)
    d = _max_diff(first, one)
    add(CheckResult("batch-size invariance (1 vs 8)", d <= tolerance, f"max |diff| = {d:.2e}"))

    lm = engine(1)
    naive = [lm.score_naive(r.args[0], r.args[1], r.args[2]["visual"]) for r in reqs]
    d = _max_diff(first, naive)
    add(CheckResult("engine = naive full forward", d <= tolerance, f"max |diff| = {d:.2e}"))

    blank = Image.new("RGB", (96, 96), (0, 0, 0))
    d = _max_diff(first, engine(8).loglikelihood(_requests(items, blank)))
    add(CheckResult("image sensitivity (real vs blank)", d > tolerance,
                    f"max |diff| = {d:.2e}", "" if d > tolerance else "the image never "
                    "reaches the model"))

    bad = []
    for q, opts, ims in items:
        parts, last = lm._prefix_parts(q, len(ims))
        for o in opts:
            ctx, cont = lm.split_continuation(last, " " + o)
            text = adapter.tokenizer.decode(cont, skip_special_tokens=False)
            if text.strip() != o.strip() or adapter.tokenize(last + " " + o) != ctx + cont:
                bad.append(f"{o!r} scored as {text!r}")
    n_opts = sum(len(opts) for _, opts, _ in items)
    add(CheckResult("scored tokens = option tokens", not bad,
                    f"{n_opts - len(bad)}/{n_opts} options exact", "; ".join(bad[:3])))

    q, opts, ims = items[0]
    target = opts[-1]
    _, last = lm._prefix_parts(q, len(ims))
    _, cont = lm.split_continuation(last, " " + target)
    with planted(adapter, cont[0]):
        rigged = engine(8).loglikelihood(_requests([(q, opts, ims)]))
    lls = [s[0] for s in rigged]
    won = max(range(len(lls)), key=lls.__getitem__) == len(opts) - 1
    sane = all(ll <= 1e-6 for ll in lls)
    add(CheckResult("sign convention (planted answer wins)", won and sane,
                    f"planted option log-prob {lls[-1]:.2f}, best other "
                    f"{max(lls[:-1]):.2f}", "" if sane else "scores above 0: not log-probs"))

    add(CheckResult("throughput", True, f"{len(items) / seconds:.2f} items/s "
                    f"({len(items)} items, batch 8)"))
    return report
