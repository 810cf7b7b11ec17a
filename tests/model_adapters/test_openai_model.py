"""`--model openai` against a real OpenAI-compatible server on 127.0.0.1 (tests/support/helpers/
vlm_server.py: vLLM's chat subset in front of a tiny LLaVA, implemented with transformers).

The server's log-likelihoods are compared with the in-process engine (`CheXbenchLM` over
`HFAutoAdapter`) on the same weights; its generations with the engine's; a killed run and two
runs sharing one cache with the server's own count of the answers it sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.vlm_server import SERVED_NAME, VLMServer, write_tiny_llava

from harness.cli import main
from harness.docs import build_docs
from harness.images import ImageRef
from harness.io import read_jsonl
from harness.openai_compat.client import RetryPolicy
from harness.phantom import generate_phantom
from harness.results_schema import validate_results
from harness.runner import ALL_TASKS
from model_adapters.openai_model import (
    CACHE_FILE,
    FilmCodec,
    OpenAIServerLM,
    PromptTokens,
    ServerAnswerError,
    compact_answer,
    option_score,
    prompt_tokens,
)

KEY_ENV = "CHEXBENCH_TEST_SERVER_KEY"
KEY = "sk-test-local-3f9a1c7e5b2d4a60"
GEN_TOKS = "8"
MC_TASKS = [t for t in ALL_TASKS if "findings" not in t]


class Req:
    """An lm-eval request as a model sees it."""

    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The server and the reference engine run tiny models in this process: one thread is
    several times faster for them than two (Python overhead per token dominates)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(
        out, n_per_pair=2, seed=5, image_size=64, n_text=2, n_fairness=0
    ).data_json


def _argv(
    data: Path,
    out: Path,
    base_url: str,
    cache: Path,
    *extra: str,
    tasks: str = "chexbench",
    model_args: str = "",
) -> list[str]:
    args = f"model={SERVED_NAME},base_url={base_url},api_key_env={KEY_ENV},cache={cache}"
    return [
        "run",
        "--model",
        "openai",
        "--model-args",
        args + model_args,
        "--data",
        str(data),
        "--tasks",
        tasks,
        "--output",
        str(out),
        "--text-metrics",
        "rouge",
        "--max-gen-toks",
        GEN_TOKS,
        "--bootstrap-samples",
        "50",
        "--no-progress",
        *extra,
    ]


def _run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and p.name != ".journal"]
    return run_dir


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["task"], r["item_id"]): r for r in read_jsonl(_run_dir(out) / "samples.jsonl")}


def _cached_answers(cache: Path) -> int:
    path = cache / CACHE_FILE
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # tables not made yet
        return 0


def _mc_requests(data: Path, task: str, limit: int | None = None):
    docs, _ = build_docs(task, str(data), None, None, False)
    docs = docs[:limit]
    reqs = [
        Req(d["question"], " " + o, {"visual": [ImageRef(p) for p in d["image_paths"]]})
        for d in docs
        for o in d["options"]
    ]
    return docs, reqs


def _text_requests(data: Path, task: str):
    from tasks.chexbench import utils

    docs, _ = build_docs(task, str(data), None, None, False)
    kwargs = {"until": [], "max_gen_toks": int(GEN_TOKS)}
    if task.endswith("summarization"):
        return docs, [Req(utils.summarization_text(d), kwargs) for d in docs]
    return docs, [
        Req(utils.generation_text(d), kwargs, {"visual": [ImageRef(p) for p in d["image_paths"]]})
        for d in docs
    ]


def _engine(model_dir: Path, mc_mode: str = "loglikelihood"):
    from model_adapters.engine import CheXbenchLM
    from model_adapters.hf_auto import HFAutoAdapter

    adapter = HFAutoAdapter(pretrained=str(model_dir), device="cpu", dtype="float32")
    return CheXbenchLM(adapter, batch_size=1, mc_mode=mc_mode, show_progress=False)


@pytest.fixture(scope="module")
def in_process(model_dir, phantom):
    """The in-process engine on the same weights: option scores and free text per item."""
    lm = _engine(model_dir)
    scores, texts = {}, {}
    for task in MC_TASKS:
        docs, reqs = _mc_requests(phantom, task)
        it = iter(lm.loglikelihood(reqs))
        for d in docs:
            scores[(task, d["item_id"])] = [next(it) for _ in d["options"]]
    for task in ("chexbench_findings_generation", "chexbench_findings_summarization"):
        docs, reqs = _text_requests(phantom, task)
        for d, text in zip(docs, lm.generate_until(reqs), strict=True):
            texts[(task, d["item_id"])] = text
    return scores, texts


@pytest.fixture(scope="module")
def ll_run(model_dir, phantom, tmp_path_factory):
    """All 8 tasks by log-likelihood through the server, uninterrupted, on a fresh cache."""
    root = tmp_path_factory.mktemp("ll")
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = KEY
    try:
        with VLMServer(model_dir, expected_key=KEY) as server:
            code = main(_argv(phantom, root / "out", server.base_url, root / "cache"))
            stats = {
                "port": server.port,
                "paid": dict(server.paid),
                "usage": dict(server.usage),
                "log": list(server.log),
                "max_in_flight": server.max_in_flight,
            }
    finally:
        os.environ.pop(KEY_ENV) if old is None else os.environ.__setitem__(KEY_ENV, old)
    assert code == 0
    return root, stats


# ---------------------------------------------------------------------------------------------
def test_loglikelihood_through_the_server_equals_the_in_process_engine(ll_run, in_process):
    root, stats = ll_run
    scores, texts = in_process
    rows = _rows(root / "out")
    assert {t for t, _ in rows} == set(ALL_TASKS)  # all 8 tasks, end to end
    worst, multi_token = 0.0, 0
    for key, ref in scores.items():
        row = rows[key]
        assert row["token_counts"] == [s.n_tokens for s in ref], key
        assert row["is_greedy"] == [s[1] for s in ref], key
        worst = max(worst, *(abs(a - s[0]) for a, s in zip(row["logprobs"], ref, strict=True)))
        multi_token += sum(n > 1 for n in row["token_counts"])
    print(f"max |server - in-process| over {sum(map(len, scores.values()))} options: {worst:.2e}")
    assert worst <= 1e-4
    assert multi_token > 0, "some options must span several tokens"
    for key, text in texts.items():  # greedy free text: the same words
        assert rows[key]["prediction"] == text, key

    result = json.loads((_run_dir(root / "out") / "results.json").read_text())
    assert validate_results(result) == []
    card = result["run_card"]
    assert card["mc_mode"] == "loglikelihood" and card["dtype"] is None
    server = card["extra"]["server"]
    assert server["protocol"]["mc_mode"] == "loglikelihood"
    assert server["images"]["format"] == "png" and server["images"]["max_side"] is None
    assert card["extra"]["generation"]["max_new_tokens"] == int(GEN_TOKS)
    assert result["model"]["adapter"] == "openai" and result["model"]["model_id"] == SERVED_NAME
    # The ledger is the server's own count: every answer it sent, once, with its usage.
    ledger = read_jsonl(_run_dir(root / "out") / "ledger.jsonl")
    assert len(ledger) == sum(stats["paid"].values()) == server["cost"]["this_invocation"]["calls"]
    assert all(n == 1 for n in stats["paid"].values())
    assert sum(r["prompt_tokens"] for r in ledger) == stats["usage"]["prompt"]
    assert sum(r["completion_tokens"] for r in ledger) == stats["usage"]["completion"]
    assert 1 < stats["max_in_flight"] <= 8  # bounded by concurrency (default 8)
    # The key went to the server (it checks it) and nowhere else.
    for path in (root / "out").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_a_rerun_is_answered_from_the_cache_without_a_key(
    ll_run, model_dir, phantom, tmp_path, monkeypatch
):
    root, first = ll_run
    monkeypatch.delenv(KEY_ENV, raising=False)
    with VLMServer(model_dir, port=first["port"]) as server:  # the same URL: the same keys
        assert main(_argv(phantom, tmp_path / "again", server.base_url, root / "cache")) == 0
        assert server.received == 0
    again, first = _rows(tmp_path / "again"), _rows(root / "out")
    assert again == first
    card = json.loads((_run_dir(tmp_path / "again") / "results.json").read_text())["run_card"]
    cost = card["extra"]["server"]["cost"]
    assert cost["this_invocation"]["calls"] == 0
    assert cost["all_requests"]["calls"] == card["extra"]["engine"]["answers_cached"] > 0


def test_dry_run_counts_requests_and_cached_answers(
    ll_run, model_dir, phantom, tmp_path, capsys, monkeypatch
):
    root, stats = ll_run
    monkeypatch.delenv(KEY_ENV, raising=False)  # a dry run needs no key and calls nothing
    url = f"http://127.0.0.1:{stats['port']}/v1"  # the first run's server, stopped: no calls
    fresh = tmp_path / "fresh-cache"
    assert (
        main(
            _argv(
                phantom,
                tmp_path / "o",
                url,
                fresh,
                "--dry-run",
                model_args=",price_in=2.5,price_out=10",
            )
        )
        == 0
    )
    out = capsys.readouterr().out
    n = len(stats["paid"])
    assert f"requests: {n} (0 cached, {n} to send" in out
    assert "estimated cost: $" in out
    assert not fresh.exists() and not (tmp_path / "o").exists()  # nothing created
    assert main(_argv(phantom, tmp_path / "o", url, root / "cache", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert f"requests: {n} ({n} cached, 0 to send" in out
    assert "estimated cost: unknown" in out


# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_generation_mode_all_tasks_matches_the_in_process_engine(
    model_dir, phantom, tmp_path, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "EMPTY")
    with VLMServer(model_dir) as server:
        # One item per subtask: each answer is up to 512 greedy tokens on both sides.
        code = main(
            _argv(
                phantom,
                tmp_path / "out",
                server.base_url,
                tmp_path / "cache",
                "--mc-mode",
                "generate",
                "--limit",
                "1",
            )
        )
    assert code == 0
    rows = _rows(tmp_path / "out")
    assert {t for t, _ in rows} == set(ALL_TASKS)
    lm = _engine(model_dir, mc_mode="generate")
    unparseable = 0
    for task in MC_TASKS:
        docs, reqs = _mc_requests(phantom, task, limit=1)
        it = iter(lm.loglikelihood(reqs))
        for d in docs:
            ref = [next(it) for _ in d["options"]]
            row = rows[(task, d["item_id"])]
            # The engine stops at the first "(X)"; the server writes on: same greedy tokens.
            assert row["generated"].startswith(ref[0].generated), (task, d["item_id"])
            assert row["unparseable"] == ref[0].unparseable
            assert row["prediction"] == (
                -1 if ref[0].unparseable else next(k for k, s in enumerate(ref) if s[1])
            )
            unparseable += row["unparseable"]
    result = json.loads((_run_dir(tmp_path / "out") / "results.json").read_text())
    assert validate_results(result) == []
    assert result["run_card"]["mc_mode"] == "generate"
    assert result["run_card"]["extra"]["engine"]["unparseable"] == unparseable

    # The leaderboard shows the mode and never puts the two modes in one column.
    from leaderboard.loader import MC_BY_GENERATION, load_folder

    board = tmp_path / "board"
    for name, src in (("gen", tmp_path / "out"),):
        (board / name).mkdir(parents=True)
        for f in _run_dir(src).iterdir():
            (board / name / f.name).write_bytes(f.read_bytes())
    (board / "ll").mkdir()
    ll = json.loads((board / "gen" / "results.json").read_text())
    ll["run_card"]["mc_mode"] = "loglikelihood"
    ll["run_id"] = "openai-loglikelihood"
    (board / "ll" / "results.json").write_text(json.dumps(ll))
    labels = sorted(e.label for e in load_folder(board).entries)
    assert len(set(labels)) == 2
    assert [MC_BY_GENERATION in label for label in labels].count(True) == 1


def test_a_hosted_api_without_prompt_logprobs(model_dir, phantom, tmp_path, monkeypatch, capsys):
    """OpenAI's API refuses vLLM's extensions: log-likelihood stops at the first request with
    a one-line error; generation-mode multiple choice and the text tasks work."""
    monkeypatch.setenv(KEY_ENV, "EMPTY")
    tasks = "chexbench_view_classification_chexpert,chexbench_findings_summarization"
    with VLMServer(model_dir, hosted=True) as server:
        code = main(
            _argv(phantom, tmp_path / "ll", server.base_url, tmp_path / "cache", tasks=tasks)
        )
        err = capsys.readouterr().err
        assert code == 2
        assert "prompt_logprobs" in err and "--mc-mode generate" in err
        assert server.received == 1 and server.total_paid == 0  # the probe, refused
        code = main(
            _argv(
                phantom,
                tmp_path / "gen",
                server.base_url,
                tmp_path / "cache",
                "--mc-mode",
                "generate",
                tasks=tasks,
            )
        )
    assert code == 0
    rows = _rows(tmp_path / "gen")
    assert all("generated" in r for (t, _), r in rows.items() if "view" in t)


def test_retry_after_is_honoured(model_dir, phantom, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "EMPTY")
    with VLMServer(model_dir, fail_first=2, retry_after="0.6") as server:
        started = time.monotonic()
        code = main(
            _argv(
                phantom,
                tmp_path / "o",
                server.base_url,
                tmp_path / "cache",
                tasks="chexbench_findings_summarization",
                model_args=",concurrency=1,backoff_base=0.01",
            )
        )
        elapsed = time.monotonic() - started
        statuses = [s for _, s in server.log]
    assert code == 0
    assert statuses[:2] == [429, 429] and set(statuses[2:]) == {200}
    assert elapsed >= 1.2  # two waits of the server's 0.6 s, not the 0.01 s backoff
    card = json.loads((_run_dir(tmp_path / "o") / "results.json").read_text())["run_card"]
    assert card["extra"]["server"]["retries"] == {"429": 2}


# ---------------------------------------------------------------------------------------------
def _spawn(argv: list[str], key: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *argv],
        env={**os.environ, KEY_ENV: key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_killed_run_resumes_from_the_cache_without_paying_twice(
    model_dir, phantom, ll_run, tmp_path, monkeypatch
):
    first_root, first = ll_run
    cache = tmp_path / "cache"
    with VLMServer(model_dir, hold_from=40, port=first["port"]) as server:
        argv = _argv(phantom, tmp_path / "out", server.base_url, cache)
        proc = _spawn(argv, "EMPTY")
        deadline = time.monotonic() + 300
        try:
            # Kill once every answer sent is in the cache and the rest are held: the kill
            # then loses nothing the server was paid for.
            while not (
                server.held
                and server.in_flight == server.held
                and _cached_answers(cache) == server.total_paid
            ):
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.05)
        finally:
            proc.kill()  # SIGKILL: no handler runs
            proc.wait()
            proc.stderr.close()
        paid_before = server.total_paid
        assert 0 < paid_before < len(first["paid"])
        server.release()
        server.hold_from = None
        monkeypatch.setenv(KEY_ENV, "EMPTY")
        assert main(argv) == 0
        paid = dict(server.paid)
    print(
        f"killed after {paid_before} paid requests; the rerun paid {sum(paid.values()) - paid_before}"
        f" more; {len(first['paid'])} distinct requests"
    )
    assert all(n == 1 for n in paid.values()), "a request was paid twice"
    assert set(paid) == set(first["paid"])  # the same requests as an uninterrupted run
    assert _rows(tmp_path / "out") == _rows(first_root / "out")  # identical results
    card = json.loads((_run_dir(tmp_path / "out") / "results.json").read_text())["run_card"]
    assert card["extra"]["server"]["cost"]["all_requests"]["calls"] == len(first["paid"])


@pytest.mark.slow
def test_two_runs_sharing_a_cache_pay_once_per_request(model_dir, phantom, ll_run, tmp_path):
    first_root, first = ll_run
    cache = tmp_path / "cache"
    tasks = ",".join(MC_TASKS[:6])
    with VLMServer(model_dir, latency_s=0.05, port=first["port"]) as server:
        procs = [
            _spawn(
                _argv(phantom, tmp_path / f"out{i}", server.base_url, cache, tasks=tasks),
                f"sk-client-{i}",
            )
            for i in range(2)
        ]
        for p in procs:
            assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
            p.stderr.close()
        paid = dict(server.paid)
        by_client = dict(server.paid_by_client)
    assert all(n == 1 for n in paid.values()), "two runs paid for one request"
    assert len(by_client) == 2 and all(by_client.values()), by_client  # both worked
    print(
        f"two runs on one cache: {sum(paid.values())} paid for {len(paid)} requests ({by_client})"
    )
    a, b = _rows(tmp_path / "out0"), _rows(tmp_path / "out1")
    assert a == b
    assert all(a[k] == v for k, v in _rows(first_root / "out").items() if k in a)


# ---------------------------------------------------------------------------------------------
def _entry(token: int, lp: float, rank: int, top: tuple[int, float] | None = None) -> dict:
    out = {str(token): {"logprob": lp, "rank": rank, "decoded_token": "x"}}
    if top is not None:
        out[str(top[0])] = {"logprob": top[1], "rank": 1, "decoded_token": "y"}
    return out


def test_prompt_tokens_reads_vllms_prompt_logprobs():
    body = {"prompt_logprobs": [None, _entry(5, -0.5, 1), _entry(7, -2.0, 3, top=(9, -0.1))]}
    tokens = prompt_tokens(body, "t, item 1")
    assert tokens.ids == (None, 5, 7) and tokens.ranks == (None, 1, 3)
    assert tokens.logprobs == (None, -0.5, -2.0)
    kept = compact_answer(body)  # what the cache stores: the same tokens, a fifth of the bytes
    assert "prompt_logprobs" not in kept and prompt_tokens(kept, "t, item 1") == tokens
    assert compact_answer({"prompt_logprobs": [None, {}]}) == {"prompt_logprobs": [None, {}]}
    with pytest.raises(ServerAnswerError, match="--mc-mode generate"):
        prompt_tokens({"choices": []}, "t, item 1")
    for bad in (
        {"5": {"logprob": float("nan"), "rank": 1}},
        {"x": {"logprob": -1, "rank": 1}},
        {"5": {"logprob": 0.5, "rank": 1}},
        {},
    ):
        with pytest.raises(ServerAnswerError, match="t, item 1"):
            prompt_tokens({"prompt_logprobs": [None, bad]}, "t, item 1")


def _tokens(ids, lps, ranks=None) -> PromptTokens:
    ranks = ranks or [1] * len(ids)
    return PromptTokens((None, *ids), (None, *lps), (None, *ranks))


def test_option_score_takes_the_tokens_past_the_common_prefix():
    ctx = _tokens([1, 2, 3], [-1, -1, -1])
    plain = option_score(
        ctx, _tokens([1, 2, 3, 4, 5], [-1, -1, -1, -0.5, -0.25], [1, 1, 1, 1, 2]), "w"
    )
    assert (plain[0], plain[1], plain.n_tokens) == (-0.75, False, 2)
    # A boundary merge: the prompt's last token and the option's first became one token.
    merged = option_score(ctx, _tokens([1, 2, 9, 5], [-1, -1, -0.5, -0.25]), "w")
    assert (merged[0], merged[1], merged.n_tokens) == (-0.75, True, 2)
    with pytest.raises(ServerAnswerError, match="--mc-mode generate"):
        option_score(_tokens([1, 2, 3, 4], [-1] * 4), _tokens([1, 8, 3, 4, 5], [-1] * 5), "w")
    with pytest.raises(ServerAnswerError, match="adds no token"):
        option_score(ctx, ctx, "w")


def test_model_args_are_checked(tmp_path):
    from harness.errors import UnknownArgument, UserError

    with pytest.raises(UserError, match="model=NAME is required"):
        OpenAIServerLM.from_model_args({"base_url": "http://127.0.0.1:1/v1"})
    with pytest.raises(UnknownArgument, match="temprature"):
        OpenAIServerLM.from_model_args({"model": "m", "temprature": 0})
    with pytest.raises(UserError, match="concurrency"):
        OpenAIServerLM.from_model_args({"model": "m", "concurrency": 0})
    with pytest.raises(UserError, match="credentials"):
        OpenAIServerLM.from_model_args({"model": "m", "base_url": "http://u:p@h/v1"})
    lm = OpenAIServerLM.from_model_args(
        {"model": "m", "base_url": "http://H:80/v1/", "cache": str(tmp_path)}, prefetch=2
    )
    assert lm.base_url == "http://h/v1"  # normalised: the URL in every cache key


def test_a_request_deadline_bounds_every_attempt_and_wait(model_dir):
    """RetryPolicy.deadline_s: a server that never answers in time is given up on once the
    request's total deadline passes, however many attempts remain."""
    import asyncio

    from harness.openai_compat.client import CallFailed, OpenAICompatClient

    with VLMServer(model_dir, hold_from=1) as server:
        policy = RetryPolicy(
            max_attempts=50, base_delay_s=0.05, max_delay_s=0.05, timeout_s=0.3, deadline_s=1.0
        )

        async def go():
            client = OpenAICompatClient(server.base_url, "EMPTY", policy)
            try:
                await client.post({"model": SERVED_NAME, "messages": []}, "item 1")
            finally:
                await client.close()

        with pytest.raises(CallFailed, match="1s request deadline"):
            asyncio.run(go())
        assert 1 < server.received < 50  # retries were cut by the deadline, not exhausted
    assert policy.worst_case_s() == 1.0  # the claim lease follows the deadline


def test_films_are_sent_as_png_of_the_decoded_pixels(phantom):
    """The data URL holds the film as harness.radiograph decodes it (lossless), downscaled
    only when max_image_side asks, and the planned body names it by its file's digest."""
    import base64
    import io

    from PIL import Image

    from harness.images import open_image

    docs, _ = build_docs("chexbench_view_classification_chexpert", str(phantom), None, None, False)
    path = docs[0]["image_paths"][0]
    for side, size in ((None, (64, 64)), (32, (32, 32))):
        codec = FilmCodec(side)
        ref = codec.ref(ImageRef(path))
        assert ref.startswith("chexbench-image:file-sha256:")
        body = {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": ref}},
                        {"type": "text", "text": "q"},
                    ],
                }
            ]
        }
        url = codec.inline(body)["messages"][0]["content"][0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert sent.mode == "RGB" and sent.size == size
        if side is None:
            assert sent.tobytes() == open_image(path).tobytes()
        assert body["messages"][0]["content"][0]["image_url"]["url"] == ref  # not modified


def test_lm_evals_own_cli_runs_the_server_model(model_dir, phantom, in_process, tmp_path, capsys):
    """`chexbench lm-eval run --model openai`: lm-eval's request and metric machinery over the
    server, scored by the official rule (highest mean log-prob per option token)."""
    import re

    task = "chexbench_view_classification_mimic_cxr"
    scores, _ = in_process
    docs, _ = build_docs(task, str(phantom), None, None, False)
    expected = [
        max(range(len(d["options"])), key=lambda i: s[i][0] / s[i].n_tokens) == d["answer"]
        for d in docs[:2]
        for s in [scores[(task, d["item_id"])]]
    ]
    model_args = f"model={SERVED_NAME},api_key_env={KEY_ENV},cache={tmp_path / 'cache'}"
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = KEY
    try:
        with VLMServer(model_dir, expected_key=KEY) as server:
            argv = ["lm-eval", "run", "--model", "openai", "--tasks", task, "--limit", "2"]
            argv += ["--model_args", f"{model_args},base_url={server.base_url}"]
            argv += ["--metadata", json.dumps({"data": str(phantom)})]
            code = main(argv)
            paid = dict(server.paid)
    finally:
        os.environ.pop(KEY_ENV) if old is None else os.environ.__setitem__(KEY_ENV, old)
    out = capsys.readouterr().out
    assert code == 0, out
    (value,) = re.findall(r"\|acc_chexbench\s*\|[^|]*\|\s*([0-9.]+)\s*\|", out)
    assert float(value) == pytest.approx(sum(expected) / len(expected))
    assert paid and all(n == 1 for n in paid.values())  # each request paid once
