"""Image prefetch and length-bucketed batches change speed, never a score.

The engine runs the tiny CheXagent on image files (decoded through the same path as a real run)
with the prefetch on and off, and with and without the length order of batches; scores,
predictions, journal keys and resume must not notice.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.images import ImageRef
from harness.io import read_jsonl
from harness.radiograph import RadiographError
from model_adapters.chexagent import CheXagentAdapter
from model_adapters.engine import CheXbenchLM
from model_adapters.prefetch import ImagePrefetcher

QUESTIONS = [
    "What is the view?",
    "Does this chest X-ray, taken in the emergency department after a fall, show a "
    "pneumothorax on either side?",
    "Which finding is present?",
    "Is the cardiac silhouette enlarged beyond what the projection explains?",
    "Any effusion?",
    "Which of the following best describes the position of the endotracheal tube tip?",
    "Is there a nodule?",
]
OPTIONS = [
    ["AP", "PA", "Lateral", "LL"],
    ["Yes", "No"],
    [
        "cardiomegaly with bilateral pleural effusions and interstitial oedema",
        "none",
        "atelectasis",
    ],
    ["Yes", "No"],
    ["small left pleural effusion", "no"],
    ["in the right main bronchus", "2 cm above the carina", "at the thoracic inlet", "absent"],
    ["Yes", "No"],
]


class Req:
    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def adapter() -> CheXagentAdapter:
    return CheXagentAdapter(pretrained="smoke", dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> list[ImageRef]:
    """Eight distinct films as JPEG and PNG files (the engine decodes them like real data)."""
    folder = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(0)
    out = []
    for k in range(8):
        grey = rng.integers(0, 256, (96 + 8 * k, 80), dtype=np.uint8)
        path = folder / f"film{k}.{'jpg' if k % 2 else 'png'}"
        Image.fromarray(grey, "L").save(path)
        out.append(ImageRef(str(path)))
    return out


def _requests(films: list[ImageRef]) -> list[Req]:
    """Items of 1 and 2 images, 2-4 options, short and long questions, one film shared."""
    reqs = []
    for k, (q, opts) in enumerate(zip(QUESTIONS, OPTIONS, strict=True)):
        images = [films[k]] if k % 3 else [films[k], films[(k + 3) % 8]]
        reqs += [Req(q, " " + o, {"visual": images}) for o in opts]
    reqs += [Req("Which view?", " " + o, {"visual": [films[0]]}) for o in ("AP", "PA")]
    return reqs


def _lm(adapter, **kwargs) -> CheXbenchLM:
    kwargs.setdefault("batch_size", 2)
    return CheXbenchLM(adapter, show_progress=False, **kwargs)


def _predictions(reqs: list[Req], scores) -> dict[str, int]:
    by_item: dict[str, list[float]] = {}
    for r, s in zip(reqs, scores, strict=True):
        by_item.setdefault(r.args[0] + repr(r.args[2]["visual"]), []).append(s[0] / s.n_tokens)
    return {k: int(np.argmax(v)) for k, v in by_item.items()}


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_prefetch_on_and_off_give_identical_scores(adapter, films, executor):
    reqs = _requests(films)
    off = _lm(adapter, prefetch=0, decode_workers=1, decode_executor="threads")
    on = _lm(adapter, prefetch=2, decode_workers=2, decode_executor=executor)
    a, b = off.loglikelihood(reqs), on.loglikelihood(reqs)
    assert [tuple(s) for s in a] == [tuple(s) for s in b]  # bit-identical, not just close
    assert off.stats.as_dict() == on.stats.as_dict()
    unique = len(
        {r.args[2]["visual"][i].path for r in reqs for i in range(len(r.args[2]["visual"]))}
    )
    # Every film was decoded once, by the lookahead, none while its batch waited.
    assert on._images.scheduled_ahead == unique and on._images.decoded_now == 0
    assert on.engine_settings()["prefetch_batches"] == 2
    assert on.engine_settings()["decode_executor"] == executor
    assert off.engine_settings()["prefetch_batches"] == 0
    # The runner closes its engine however the run ends: the decode threads end with it.
    threads = [t for lm in (off, on) if lm._images._threads for t in lm._images._threads._threads]
    assert threads  # on-demand decoding (prefetch off) ran in a pool of threads
    for lm in (off, on):
        lm.close()
    assert not [t for t in threads if t.is_alive()]


def test_bucketing_keeps_predictions_and_cuts_padding(adapter, films, tmp_path):
    reqs = _requests(films)
    plain = _lm(adapter, bucket=False, resume_path=tmp_path / "plain.jsonl")
    bucketed = _lm(adapter, bucket=True, resume_path=tmp_path / "bucketed.jsonl")
    a, b = plain.loglikelihood(reqs), bucketed.loglikelihood(reqs)
    plain.store.close()
    bucketed.store.close()
    # Different batch companions: equal up to float rounding (the engine is batch-invariant).
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) < 1e-4
    assert [(x.n_tokens, x[1]) for x in a] == [(y.n_tokens, y[1]) for y in b]
    assert _predictions(reqs, a) == _predictions(reqs, b)
    # The same journal keys: a run resumed with the other setting finds every score.
    keys = [
        {row["key"] for row in read_jsonl(tmp_path / f"{n}.jsonl")} for n in ("plain", "bucketed")
    ]
    assert keys[0] == keys[1] and len(keys[0]) == len(reqs)
    s, t = plain.stats, bucketed.stats
    assert t.prefix_padding + t.option_padding < s.prefix_padding + s.option_padding
    assert (t.prefix_tokens - t.prefix_padding) == (s.prefix_tokens - s.prefix_padding)
    assert t.images_encoded == s.images_encoded and t.prefix_forwards == s.prefix_forwards


def test_batches_never_mix_image_counts_and_largest_comes_first(adapter, films):
    from model_adapters.engine import _batches

    lm = _lm(adapter, batch_size=3)
    items = lm._group(_requests(films))
    batches = _batches(items, 3, lambda it: len(it.images), lm._length_key)
    assert all(len({len(it.images) for it in b}) == 1 for b in batches)
    assert sorted(id(it) for b in batches for it in b) == sorted(id(it) for it in items)
    for n in (1, 2):
        keys = [lm._length_key(it) for b in batches for it in b if len(it.images) == n]
        assert keys == sorted(keys, reverse=True)


def test_resume_across_settings(adapter, films, tmp_path):
    """A run cut short with prefetch and bucketing, resumed with neither, scores the rest only,
    and ends where an uninterrupted run does."""
    reqs = _requests(films)
    journal = tmp_path / "journal.jsonl"
    first = _lm(adapter, prefetch=2, bucket=True, resume_path=journal)
    first.loglikelihood(reqs[:9])
    first.store.close()
    second = _lm(adapter, prefetch=0, bucket=False, resume_path=journal)
    resumed = second.loglikelihood(reqs)
    second.store.close()
    assert second.stats.requests_resumed == 9
    assert second.stats.requests_scored == len(reqs) - 9
    fresh = _lm(adapter).loglikelihood(reqs)
    assert max(abs(x[0] - y[0]) for x, y in zip(resumed, fresh, strict=True)) < 1e-4


def test_a_film_that_fails_to_decode_fails_its_own_batch(adapter, films, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    reqs = [
        Req(q, " " + o, {"visual": [films[k] if k != 2 else ImageRef(str(bad))]})
        for k, (q, opts) in enumerate(zip(QUESTIONS[:4], OPTIONS[:4], strict=True))
        for o in opts
    ]
    lm = _lm(adapter, batch_size=2, prefetch=2, bucket=False, resume_path=tmp_path / "j.jsonl")
    with pytest.raises(RadiographError, match="broken.jpg"):
        lm.loglikelihood(reqs)
    lm.store.close()
    # The first batch (items 0 and 1) was scored and journaled before the error surfaced.
    assert len(list(read_jsonl(tmp_path / "j.jsonl"))) == len(OPTIONS[0]) + len(OPTIONS[1])


def test_generation_is_unchanged_by_prefetch(adapter, films):
    reqs = [
        Req(q, {"until": ["\n"], "max_gen_toks": 4}, {"visual": [films[k]]})
        for k, q in enumerate(QUESTIONS[:5])
    ]
    a = _lm(adapter, prefetch=0).generate_until(reqs)
    b = _lm(adapter, prefetch=2).generate_until(reqs)
    assert a == b


def test_lookahead_decodes_next_batches_while_current_runs():
    loaded: list[str] = []
    lock = threading.Lock()

    def load(name: str) -> str:
        with lock:
            loaded.append(name)
        return name.upper()

    pf = ImagePrefetcher(load, workers=2, depth=2, executor="threads")  # loads seen here
    batches = [["a"], ["b", "a"], ["c"], ["d"], ["e"]]
    seen = []
    for k, batch in enumerate(pf.stream(batches, lambda b: [(x, x) for x in b])):
        if k == 0:
            deadline = time.monotonic() + 10
            while len(loaded) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            # Batches 0..2 are decoding while batch 0 runs, "a" once for both batches using it;
            # batch 3 waits until batch 1 starts (the lookahead bounds memory).
            assert sorted(loaded) == ["a", "b", "c"]
        seen.append(pf.get_many([(x, x) for x in batch]))
    assert seen == [["A"], ["B", "A"], ["C"], ["D"], ["E"]]
    assert sorted(loaded) == ["a", "b", "c", "d", "e"] and pf.decoded_now == 0
    assert not pf._pending  # everything released after its batch
    pf.close()


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _load_or_fail(name: str) -> str:
    if name == "bad":
        raise RadiographError(name, "unreadable (truncated)")
    if name == "odd":
        raise _Unpicklable(1, 2)
    return name * 2


def test_process_workers_send_back_pixels_and_errors():
    pf = ImagePrefetcher(_load_or_fail, workers=2, depth=1, executor="processes")
    batches = [["x"], ["bad"], ["odd"]]
    got = []
    for batch in pf.stream(batches, lambda b: [(k, k) for k in b]):
        if batch == ["x"]:
            got.append(pf.get_many([("x", "x")]))
        elif batch == ["bad"]:
            with pytest.raises(RadiographError, match="bad: unreadable") as err:
                pf.get_many([("bad", "bad")])
            assert err.value.path == "bad" and err.value.reason == "unreadable (truncated)"
        else:  # an exception that cannot cross the process boundary arrives as its text
            with pytest.raises(RuntimeError, match="_Unpicklable: 1 and 2"):
                pf.get_many([("odd", "odd")])
    assert got == [["xx"]] and pf._ahead is None  # the process pool ends with the stream


KILLED_ENGINE = """
import os, signal, sys, time
from model_adapters.prefetch import ImagePrefetcher

def slow(name):
    time.sleep(60)
    return name

pf = ImagePrefetcher(slow, workers=2, depth=2, executor="processes")
stream = pf.stream([["a"], ["b"], ["c"]], lambda b: [(k, k) for k in b])
next(stream)
time.sleep(0.5)
print(" ".join(str(p) for p in pf._ahead._processes), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\tZ" not in next(line for line in fh if line.startswith("State:"))
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_die_with_a_killed_engine():
    """kill -9 of the engine must not leave decode workers holding its stdout open (a caller
    reading it would wait forever) or running on."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_ENGINE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)  # hangs here if a worker kept the pipe
    pids = [int(p) for p in out.split()]
    assert proc.returncode == -9 and len(pids) == 2
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _tensor(dtype_name: str):
    import torch

    g = torch.Generator().manual_seed(3)
    return torch.randn(3, 5, 7, generator=g).to(getattr(torch, dtype_name)).transpose(0, 2)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16", "int64"])
def test_tensors_come_back_from_workers_bit_for_bit(dtype_name):
    import torch

    pf = ImagePrefetcher(_tensor, workers=1, depth=0, executor="processes")
    for batch in pf.stream([[dtype_name]], lambda b: [(k, k) for k in b]):
        (got,) = pf.get_many([(k, k) for k in batch])
    want = _tensor(dtype_name)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)
    bits = [t.contiguous().reshape(-1).view(torch.uint8) for t in (got, want)]
    assert torch.equal(*bits)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="depth"):
        ImagePrefetcher(str, depth=-1)
    with pytest.raises(ValueError, match="workers"):
        ImagePrefetcher(str, workers=-2)
    with pytest.raises(ValueError, match="executor"):
        ImagePrefetcher(str, executor="gpu")


def test_run_card_records_the_engine_settings(tmp_path):
    from harness.cli import main
    from harness.phantom import generate_phantom

    data = generate_phantom(
        tmp_path / "ph", n_per_pair=2, seed=5, image_size=64, n_text=0, n_fairness=0
    ).data_json
    out = tmp_path / "runs"
    rc = main(
        [
            "run",
            "--model",
            "chexagent",
            "--model-args",
            "pretrained=smoke",
            "--data",
            str(data),
            "--tasks",
            "chexbench_view_classification_mimic_cxr",
            "--output",
            str(out),
            "--batch-size",
            "2",
            "--prefetch",
            "1",
            "--bootstrap-samples",
            "50",
            "--no-progress",
        ]
    )
    assert rc == 0
    (results,) = Path(out).glob("*/results.json")
    settings = json.loads(results.read_text())["run_card"]["extra"]["engine_settings"]
    assert settings["prefetch_batches"] == 1 and settings["bucket_by_length"] is True
    assert settings["batch_size"] == 2 and settings["decode_workers"] >= 1
