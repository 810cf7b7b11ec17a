"""Trust at the edges of `chexbench judge` (issue 16): each failure measured on the judge before
the fix, as a test, through the real CLI, the real `openai` client and a real local
chat-completions server (tests/support/helpers/openai_server.py).

- a cache filled against one server must not answer for another;
- two judges on one cache pay once per judgment, and every paid call is recorded;
- a response trickled far past --timeout is cut at the deadline, never accepted;
- absurd `usage` (1e400, negative, fractional, not a number) stops the run: nothing is booked;
- a key a server echoes in its 401 message is masked;
- credentials in the endpoint URL are refused before any call.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.openai_server import TRICKLED_TEXT, ChatServer, text_rows, write_samples

from harness.cli import main as cli_main

KEY = "sk-chexbench-trust-9d41b7c2e0a8f356"
KEY_ENV = "CHEXBENCH_JUDGE_TRUST_KEY"


def judge(argv: list[str]) -> int:
    """`chexbench judge ...` in this process."""
    return cli_main(["judge", *argv])


def _inputs(tmp_path: Path, n: int, ref_marker=lambda i: "") -> tuple[Path, Path]:
    ref = lambda i: f"reference findings {i}{ref_marker(i)}"  # noqa: E731
    a, b = tmp_path / "chexagent.samples.jsonl", tmp_path / "baseline.samples.jsonl"
    write_samples(a, text_rows(n, lambda i: f"A report {i} quality={i % 3}", ref))
    write_samples(b, text_rows(n, lambda i: f"B report {i} quality=1", ref))
    return a, b


def _argv(base_url: str, tmp_path: Path, runs: list[Path], out: str, *extra: str) -> list[str]:
    return [
        "--runs", *map(str, runs), "--task", "findings_generation",
        "--judge-model", "judge-test", "--base-url", base_url, "--api-key-env", KEY_ENV,
        "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "out" / out),
        "--backoff-base", "0.01", "--backoff-max", "0.05",
        "--price-in", "30", "--price-out", "60",
        "--bootstrap-samples", "100", "--no-progress", *extra,
    ]  # fmt: skip


def _result(tmp_path: Path, out: str) -> dict:
    return json.loads((tmp_path / "out" / out).read_text())


def _ledger(tmp_path: Path, result: dict) -> list[dict]:
    text = (tmp_path / "out" / result["judge"]["ledger_file"]).read_text()
    return [json.loads(line) for line in text.splitlines()]


# -- the cache key --------------------------------------------------------------------------


def test_a_cache_filled_against_one_server_does_not_answer_for_another(tmp_path, monkeypatch):
    """Measured before: the second server got 0 requests and its 'results' were the first's."""
    monkeypatch.setenv(KEY_ENV, KEY)
    n = 6
    a, b = _inputs(tmp_path, n)
    with ChatServer() as first, ChatServer(invert=True) as second:
        assert judge(_argv(first.base_url, tmp_path, [a, b], "first.json")) == 0
        assert judge(_argv(second.base_url, tmp_path, [a, b], "second.json")) == 0
        # The other endpoint is another judge: every judgment is asked there, once.
        assert second.total_requests == 2 * n
        assert sorted(second.successes.values()) == [1] * (2 * n)
        # Back on the first server (spelled with a trailing slash): all cached, no call.
        before = first.total_requests
        assert judge(_argv(first.base_url + "/", tmp_path, [a, b], "again.json")) == 0
        assert first.total_requests == before == 2 * n
    counts = _result(tmp_path, "first.json")["judge"]["pairs"][0]["counts"]
    inverted = _result(tmp_path, "second.json")["judge"]["pairs"][0]["counts"]
    assert counts == {"win": 2, "tie": 2, "loss": 2}  # A's quality i % 3 against B's 1
    assert inverted == {"win": counts["loss"], "tie": counts["tie"], "loss": counts["win"]}
    assert (
        _result(tmp_path, "again.json")["judge"]["pairs"]
        == _result(tmp_path, "first.json")["judge"]["pairs"]
    )


# -- two judges on one cache ----------------------------------------------------------------


def test_two_concurrent_judges_pay_once_per_judgment_and_record_every_paid_call(tmp_path):
    """Two judge processes, one cache, one server. The server holds every answer until both
    processes have sent a request, so they are provably in flight together. Measured before:
    76 paid calls for 40 judgments, 40 recorded."""
    n = 20
    a, b = _inputs(tmp_path, n)
    with ChatServer(latency_s=0.05, gate_clients=2, gate_timeout_s=120) as server:
        procs = []
        for i, key in enumerate(("sk-trust-process-one-1a2b3c4d", "sk-trust-process-two-5e6f7a8b")):
            argv = _argv(server.base_url, tmp_path, [a, b], f"p{i}.json", "--concurrency", "4")
            env = {**os.environ, KEY_ENV: key}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "harness.cli", "judge", *argv],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        errors = []
        for p in procs:
            try:
                _, err = p.communicate(timeout=400)
            finally:
                p.kill()
            errors.append((p.returncode, err))
        assert [rc for rc, _ in errors] == [0, 0], errors
        assert server.gate_opened_by_clients, "the two judges never had requests in flight together"
        assert len(server.paid_by_client) == 2 and all(server.paid_by_client.values())
        # Exactly one paid call per distinct judgment, across both processes.
        assert len(server.successes) == 2 * n
        assert sorted(server.successes.values()) == [1] * (2 * n)
        paid = (sum(server.successes.values()), server.usage_prompt, server.usage_completion)

    results = [_result(tmp_path, f"p{i}.json") for i in range(2)]
    assert results[0]["judge"]["pairs"] == results[1]["judge"]["pairs"]
    # Every paid call is recorded once, by the process that paid for it, with its usage.
    mine = [row for r in results for row in _ledger(tmp_path, r) if row["this_invocation"]]
    assert (
        len(mine),
        sum(r["prompt_tokens"] for r in mine),
        sum(r["completion_tokens"] for r in mine),
    ) == paid
    assert sum(r["judge"]["cost"]["this_invocation"]["calls"] for r in results) == 2 * n
    for r in results:
        ledger = _ledger(tmp_path, r)
        assert len(ledger) == 2 * n  # both results list all 40 calls behind them
        assert r["judge"]["cost"]["all_judgments"]["calls"] == 2 * n


# -- the deadline ---------------------------------------------------------------------------


def test_a_response_trickled_past_the_timeout_is_cut_at_the_deadline(tmp_path, monkeypatch):
    """The server sends a valid answer a few bytes every 0.4 s over 40 s: no single read waits
    long, so only a total deadline stops it. Measured before: a 13 s trickle was accepted
    under --timeout 2."""
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 1, lambda i: " TRICKLE:1")
    with ChatServer(trickle_s=40.0) as server:
        argv = _argv(
            server.base_url,
            tmp_path,
            [a, b],
            "t.json",
            "--timeout",
            "2",
            "--max-attempts",
            "3",
            "--concurrency",
            "2",
        )
        assert judge(argv) == 0
        assert server.trickles_completed == 0  # the client never read a trickle to its end
        assert sorted(server.successes.values()) == [1, 1]  # each order's second attempt
    result = _result(tmp_path, "t.json")
    assert result["judge"]["retries"] == {"timeout": 2}
    rows = [json.loads(x) for x in (tmp_path / "out" / "t.samples.jsonl").read_text().splitlines()]
    assert TRICKLED_TEXT not in (rows[0]["response_ab"], rows[0]["response_ba"])


# -- usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["1e400", "-40000000", "12.5", "true", '"120"', "null"])
def test_invalid_usage_stops_the_run_and_books_nothing(tmp_path, monkeypatch, capsys, literal):
    """Measured before: 1e400 crashed with OverflowError; -40000000 booked -$1.2M."""
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 3, lambda i: f" USAGE={literal}" if i == 0 else "")
    with ChatServer() as server:
        rc = judge(_argv(server.base_url, tmp_path, [a, b], "u.json", "--concurrency", "1"))
        assert rc == 2
        assert server.total_requests == 1  # not retried: a server that miscounts stays wrong
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the "judging: ..." line
    assert error.startswith("error: ") and "usage.prompt_tokens" in error
    assert not (tmp_path / "out").exists()
    # The call was answered (and may be billed): the ledger keeps it, with no tokens booked.
    with sqlite3.connect(tmp_path / "cache" / "judge_cache.sqlite") as db:
        rows = db.execute("SELECT prompt_tokens, completion_tokens, note FROM calls").fetchall()
        answers = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert len(rows) == 1 and rows[0][:2] == (None, None) and "usage" in rows[0][2]
    assert answers == 0  # and the answer is not cached as a judgment


# -- secrets --------------------------------------------------------------------------------


def test_a_key_echoed_in_a_401_message_is_masked(tmp_path, monkeypatch, capsys, caplog):
    """Measured before: the key was printed in the one-line error."""
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 2)
    caplog.set_level(logging.DEBUG)
    with ChatServer(echo_key_401=True) as server:
        rc = judge(_argv(server.base_url, tmp_path, [a, b], "k.json", "--concurrency", "1", "-v"))
        assert rc == 2 and server.total_requests == 1
    captured = capsys.readouterr()
    seen = captured.out + captured.err + caplog.text
    assert "HTTP 401" in captured.err and "Incorrect API key provided: ***" in captured.err
    assert KEY not in seen
    assert KEY[3:20] not in seen  # nor a long piece of it
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "url,where",
    [
        ("http://judge-user:s3cretpw@{host}/v1", "--base-url"),
        ("http://{host}/v1?api-key=s3cretpw", "--base-url"),
        ("env:http://judge-user:s3cretpw@{host}/v1", "OPENAI_BASE_URL"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_credentials_in_the_endpoint_url_are_refused(
    tmp_path, monkeypatch, capsys, url, where, dry_run
):
    """Measured before: user:pass@ was sent, then reported as a malformed response after
    6 attempts."""
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 2)
    with ChatServer() as server:
        host = server.base_url.removeprefix("http://").removesuffix("/v1")
        argv = _argv(url.format(host=host), tmp_path, [a, b], "c.json")
        if url.startswith("env:"):
            monkeypatch.setenv("OPENAI_BASE_URL", url.format(host=host).removeprefix("env:"))
            i = argv.index("--base-url")
            del argv[i : i + 2]
        rc = judge([*argv, "--dry-run"] if dry_run else argv)
        assert rc == 2
        assert server.total_requests == 0
    err = capsys.readouterr().err
    assert where in err and "credentials" in err and "s3cretpw" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
