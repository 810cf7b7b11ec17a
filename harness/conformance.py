"""`chexbench check-adapter`: is a model adapter wired correctly before its numbers mean anything?

Peer harnesses shipped adapters that returned a loss instead of a log-prob, that never showed
the image to the model, or that scored tokens other than the option's; a hand-written Qwen2-VL
adapter passed 1-D positions where the model uses M-RoPE and scored 3e-3 away from the model's
own forward. Each check below fails on one of those bugs; together they are the bar for
submitting a new adapter. The "reference forward" check is the one that does not rerun the
adapter's code: it compares with the model's own processor and forward
(`model_adapters.reference`), wherever the model has such a class.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from harness.images import ImageRef
from model_adapters.base import VisionLanguageAdapter
from model_adapters.engine import CheXbenchLM, load_rgb
from model_adapters.native import NativeAdapter
from model_adapters.reference import native_reference

# Added to the rigged tokens' logits: beats any real logit gap, and a rigged option of n tokens
# drawn from k rigged ids still scores about -n*log(k), far above an option with one other token.
PLANT_BONUS = 100.0


@dataclass
class CheckResult:
    name: str
    passed: bool
    figure: str  # the measured number(s) behind the verdict
    detail: str = ""
    skipped: bool = False  # nothing to compare with (passed stays True: it fails nothing)

    @property
    def verdict(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"


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


def phantom_items(
    n_items: int = 8, seed: int = 0, folder: str | Path | None = None
) -> list[tuple[str, list[str], list[Any]]]:
    """(question, options, images) from a small phantom set, across several tasks.

    The images stay files in `folder` (read when scored), so the caller keeps the folder for
    as long as it uses the items: a TemporaryDirectory around the checks. Without one, a
    temporary folder removed when the process exits (a test session's shared items).
    """
    from harness.data import load_data
    from harness.phantom import generate_phantom

    if folder is None:
        folder = tempfile.mkdtemp(prefix="chexbench-conformance-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    folder = Path(folder)
    res = generate_phantom(folder, n_per_pair=1, seed=seed, image_size=96, n_text=1, n_fairness=0)
    data = load_data(res.data_json)
    items = []
    for item in data.perception[:n_items]:
        images = [ImageRef(str(folder / p)) for p in item.image_paths]
        items.append((item.question, item.options, images))
    return items


def _requests(items, image_override: Any = None) -> list[_Req]:
    return [
        _Req(q, " " + o, {"visual": [image_override] * len(ims) if image_override else ims})
        for q, opts, ims in items
        for o in opts
    ]


def _max_diff(a: list, b: list) -> float:
    return max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True))


def output_layer(adapter: Any) -> torch.nn.Module:
    """The module producing vocabulary logits, where the sign check plants its answer."""
    hook = getattr(adapter, "output_layer", None)
    if callable(hook):
        return hook()
    model = getattr(adapter, "model", None)
    # Natively written wrappers (Med-Flamingo, RadFM) hold a transformers decoder inside a
    # plain nn.Module, so look through submodules (pre-order: the outermost head wins).
    for module in model.modules() if isinstance(model, torch.nn.Module) else ():
        get = getattr(module, "get_output_embeddings", None)
        layer = get() if callable(get) else None
        if isinstance(layer, torch.nn.Module):
            return layer
    raise TypeError(f"{adapter.name}: cannot find the output layer; define `output_layer()`")


@contextlib.contextmanager
def planted(adapter: Any, token_ids: Any) -> Iterator[None]:
    """Rig the model itself (its logit layer) so the tokens `token_ids` become near-certain."""
    ids = sorted({int(t) for t in ([token_ids] if isinstance(token_ids, int) else token_ids)})

    def bump(_module, _inputs, output):
        output = output.clone()
        output[..., ids] += PLANT_BONUS
        return output

    handle = output_layer(adapter).register_forward_hook(bump)
    try:
        yield
    finally:
        handle.remove()


def rig_target(lm: CheXbenchLM, items: list) -> tuple[int, int, tuple[int, ...]] | None:
    """(item, option, its token ids) to rig: an option each of whose rivals has a token the
    option lacks, so rigging all of its tokens can only make it win (with a byte-level
    tokenizer every option may start with the same bare space: rigging one token proves
    nothing). The shortest such option, the last on ties; None when no item has one."""
    best = None
    for i, (q, opts, ims) in enumerate(items):
        tokens = [tuple(lm.layout(q, " " + o, len(ims)).option) for o in opts]
        for k in range(len(opts)):
            if all(set(tokens[j]) - set(tokens[k]) for j in range(len(opts)) if j != k):
                if best is None or len(tokens[k]) <= len(best[2]):
                    best = (i, k, tokens[k])
    return best


def reference_scorer(adapter: Any) -> tuple[Any, str] | None:
    """(function(context, continuation, images) -> (log-prob, greedy, n), what it is), or None
    when the model has no reference: a native adapter's model and processor, or a splice
    adapter's `reference_forward` (the model's own class)."""
    if isinstance(adapter, NativeAdapter):

        def score(context: str, continuation: str, images: list) -> Any:
            return native_reference(adapter, context, continuation, images)[0]

        return score, "the model's own processor and forward"
    own = getattr(type(adapter), "reference_forward", None)
    if own is None or own is VisionLanguageAdapter.reference_forward:  # the default: none
        return None
    return adapter.reference_forward, "the adapter's reference_forward (the model's own class)"


def run_checks(
    adapter: Any, items: list | None = None, tolerance: float = 1e-4
) -> ConformanceReport:
    """Every check on the same items; a check whose code raises is reported as failed with the
    exception (a broken adapter gets a report naming what broke, not a traceback)."""
    if not items:  # phantom items in a folder that lives as long as the checks
        with tempfile.TemporaryDirectory(prefix="chexbench-conformance-") as folder:
            return run_checks(adapter, phantom_items(folder=folder), tolerance)
    report = ConformanceReport(adapter.name)
    reqs = _requests(items)

    def engine(batch_size: int) -> CheXbenchLM:
        return CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)

    def check(name: str, fn: Any) -> None:
        try:
            passed, figure, detail, *rest = fn()
        except Exception as exc:  # noqa: BLE001 - the adapter under test may raise anything
            passed, figure, detail, rest = False, "raised", f"{type(exc).__name__}: {exc}", []
        report.checks.append(CheckResult(name, passed, figure, detail, bool(rest and rest[0])))

    start = time.perf_counter()
    try:
        first = engine(8).loglikelihood(reqs)
    except Exception as exc:  # noqa: BLE001
        report.checks.append(
            CheckResult("engine scores the items", False, "raised", f"{type(exc).__name__}: {exc}")
        )
        return report
    seconds = time.perf_counter() - start
    lm = engine(1)

    def determinism():
        d = _max_diff(first, engine(8).loglikelihood(reqs))
        return d == 0.0, f"max |diff| = {d:.2e}", ""

    def batch_invariance():
        d = _max_diff(first, engine(1).loglikelihood(reqs))
        return d <= tolerance, f"max |diff| = {d:.2e}", ""

    def reference_equality():
        found = reference_scorer(adapter)
        if found is None:
            return (
                True,
                "no reference",
                "the model has no transformers class to compare with "
                "(a splice adapter may define reference_forward); the next check reruns the "
                "adapter's own code",
                True,
            )
        score, what = found
        diffs, counts = [], []
        for r, got in zip(reqs, first, strict=True):
            images = [load_rgb(im) for im in lm._limit_images(r.args[2]["visual"])]
            ref = score(r.args[0], r.args[1], images)
            if ref is None:  # this checkpoint has none (a hub model running its own code)
                return (
                    True,
                    "no reference",
                    "reference_forward has none for this model; the "
                    "next check reruns the adapter's own code",
                    True,
                )
            diffs.append(abs(got[0] - ref[0]))
            if got.n_tokens != ref[2]:
                counts.append(f"{r.args[1]!r}: {got.n_tokens} tokens scored, reference {ref[2]}")
        d = max(diffs)
        detail = "; ".join(counts[:2]) or (
            ""
            if d <= tolerance
            else f"scores differ from {what} (template, positions, masks, "
            "image preprocessing or cache)"
        )
        return d <= tolerance and not counts, f"max |diff| = {d:.2e}", detail

    def naive_equality():
        naive = [lm.score_naive(r.args[0], r.args[1], r.args[2]["visual"]) for r in reqs]
        d = _max_diff(first, naive)
        return d <= tolerance, f"max |diff| = {d:.2e}", ""

    def image_sensitivity():
        blank = Image.new("RGB", (96, 96), (0, 0, 0))
        d = _max_diff(first, engine(8).loglikelihood(_requests(items, blank)))
        return (
            d > tolerance,
            f"max |diff| = {d:.2e}",
            "" if d > tolerance else "the image never reaches the model",
        )

    def token_alignment():
        bad = []
        for q, opts, ims in items:
            for o in opts:
                fallbacks = lm.stats.boundary_fallbacks
                cont = list(lm.layout(q, " " + o, len(ims)).option)
                text = adapter.tokenizer.decode(cont, skip_special_tokens=False)
                if text.strip() != o.strip():
                    bad.append(f"{o!r} scored as {text!r}")
                elif lm.stats.boundary_fallbacks != fallbacks:
                    bad.append(f"{o!r} merges with the prompt's last token")
        n_opts = sum(len(opts) for _, opts, _ in items)
        return not bad, f"{n_opts - len(bad)}/{n_opts} options exact", "; ".join(bad[:3])

    def sign_convention():
        target = rig_target(lm, items)
        if target is None:
            return (
                False,
                "nothing to rig",
                "no option has a token its rivals lack: options are not scored on their own tokens",
            )
        i, k, tokens = target
        q, opts, ims = items[i]
        with planted(adapter, tokens):
            rigged = engine(8).loglikelihood(_requests([(q, opts, ims)]))
        lls = [s[0] for s in rigged]
        others = max(ll for j, ll in enumerate(lls) if j != k)
        won = lls[k] > others
        sane = all(ll <= 1e-6 for ll in lls)
        if not sane:
            detail = "scores above 0: not log-probs"
        elif won:
            detail = ""
        elif lls[k] == others:
            detail = "the rigged option tied: options are not scored on their own tokens"
        else:
            detail = "the rigged option lost: scores rank the wrong way (a loss, negated logits?)"
        return (
            won and sane,
            f"rigged {opts[k]!r} ({len(tokens)} tokens): log-prob "
            f"{lls[k]:.2f}, best other {others:.2f}",
            detail,
        )

    check("determinism (two runs)", determinism)
    check("batch-size invariance (1 vs 8)", batch_invariance)
    check("engine = reference forward (model's own)", reference_equality)
    check("engine = adapter's own full forward", naive_equality)
    check("image sensitivity (real vs blank)", image_sensitivity)
    check("scored tokens = option tokens", token_alignment)
    check("sign convention (rigged option wins)", sign_convention)
    report.checks.append(
        CheckResult(
            "throughput", True, f"{len(items) / seconds:.2f} items/s ({len(items)} items, batch 8)"
        )
    )
    return report
