"""`chexbench judge` end to end, driven by the real `openai` client against a real local
chat-completions server (tests/support/helpers/openai_server.py) that scripts verdicts and failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.openai_server import ChatServer, text_rows, write_samples

from harness.cli import main as cli_main
from harness.results_schema import validate_results


def main(argv: list[str]) -> int:
    """`chexbench judge ...` in this process."""
    return cli_main(["judge", *argv])


KEY = "sk-chexbench-test-3f9a1c7e5b"
KEY_ENV = "CHEXBENCH_JUDGE_TEST_KEY"
FAILURES = {1: " FAIL429:2", 2: " MALFORMED", 3: " SLOW:1", 4: " GARBAGE:1", 5: " FAIL500:2"}


def _quality_a(i: int) -> int:
    return i % 3


def _inputs(
    tmp_path: Path, n: int, failures: dict[int, str] | None = None, bias: int | None = None
) -> tuple[Path, Path]:
    failures = failures or {}
    ref = lambda i: f"reference findings {i}{failures.get(i, '')}"  # noqa: E731
    a, b = tmp_path / "chexagent.samples.jsonl", tmp_path / "baseline.samples.jsonl"
    write_samples(a, text_rows(n, lambda i: f"A report {i} quality={_quality_a(i)}", ref))
    write_samples(
        b, text_rows(n, lambda i: f"B report {i} quality=1" + (" BIAS" if i == bias else ""), ref)
    )
    return a, b


def _argv(server: ChatServer, tmp_path: Path, runs: list[Path], out: str, *extra: str):
    return [
        "--runs",
        *map(str, runs),
        "--task",
        "findings_generation",
        "--judge-model",
        "judge-test",
        "--base-url",
        server.base_url,
        "--api-key-env",
        KEY_ENV,
        "--cache",
        str(tmp_path / "cache"),
        "--output",
        str(tmp_path / "out" / out),
        "--timeout",
        "0.4",
        "--backoff-base",
        "0.01",
        "--backoff-max",
        "0.05",
        "--price-in",
        "10",
        "--price-out",
        "30",
        "--bootstrap-samples",
        "200",
        "--no-progress",
        *extra,
    ]


def _all_written_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_scripted_verdicts_failures_retries_ledger_key_and_cached_rerun(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(KEY_ENV, KEY)
    n = 12
    a, b = _inputs(tmp_path, n, FAILURES, bias=6)
    with ChatServer(slow_s=1.0, expected_key=KEY) as server:
        assert main(_argv(server, tmp_path, [a, b], "first.json", "--concurrency", "4")) == 0
        first_requests = server.total_requests
        usage = (server.usage_prompt, server.usage_completion)
        # Every call carried the key, and every call that failed was retried until it answered.
        assert server.auth_bad == 0 and server.auth_ok == first_requests
        assert sorted(server.successes.values()) == [1] * (2 * n)
        attempts_by_ref = {}
        for count in server.attempts.values():
            attempts_by_ref.setdefault(count, 0)
            attempts_by_ref[count] += 1
        # 2 orders each: FAIL429:2 and FAIL500:2 -> 3 attempts; SLOW:1, GARBAGE:1 -> 2.
        assert attempts_by_ref == {1: 2 * n - 8, 2: 4, 3: 4}

        result = json.loads((tmp_path / "out" / "first.json").read_text())
        assert validate_results(result) == []
        judge = result["judge"]
        assert judge["retries"] == {"429": 4, "500": 4, "timeout": 2, "malformed_response": 2}
        pair = judge["pairs"][0]
        assert (pair["model_a"], pair["model_b"]) == ("chexagent", "baseline")
        # Expected from the data alone: A's quality i%3 against B's 1; item 6's judge always
        # prefers Assistant 1 (a flip, hence a tie); item 2's answers have no label.
        expected = {"win": 0, "tie": 0, "loss": 0}
        for i in range(n):
            if i == 2:
                continue
            if i == 6:
                expected["tie"] += 1
                continue
            q = _quality_a(i)
            expected["win" if q > 1 else "loss" if q < 1 else "tie"] += 1
        assert pair["counts"] == expected
        assert pair["n"] == n - 1
        assert pair["win"]["value"] == pytest.approx(expected["win"] / (n - 1))
        assert pair["position_flip_rate"]["value"] == pytest.approx(1 / (n - 1))
        assert pair["unparseable"] == {"items": 1, "responses": 2}
        assert judge["template_sha256"] == result["run_card"]["extra"]["template_sha256"]
        assert judge["base_url_host"].startswith("127.0.0.1:")
        assert judge["http_transport"] in {"aiohttp", "httpx"}

        # The ledger adds up: per-call rows = totals = what the server reported in `usage`.
        ledger = [
            json.loads(x)
            for x in (tmp_path / "out" / judge["ledger_file"]).read_text().splitlines()
        ]
        assert len(ledger) == 2 * n
        row_sums = (
            sum(r["prompt_tokens"] for r in ledger),
            sum(r["completion_tokens"] for r in ledger),
        )
        totals = judge["cost"]["all_judgments"]
        assert row_sums == usage == (totals["prompt_tokens"], totals["completion_tokens"])
        assert judge["cost"]["this_invocation"] == totals
        assert totals["cost_usd"] == pytest.approx((usage[0] * 10 + usage[1] * 30) / 1e6)
        assert sum(r["cost_usd"] for r in ledger) == pytest.approx(totals["cost_usd"])
        assert (tmp_path / "out" / judge["chart_file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        samples = (tmp_path / "out" / result["samples_file"]).read_text().splitlines()
        assert len(samples) == n

        # A cached rerun makes zero calls (and needs no key at all) and reproduces the result.
        monkeypatch.delenv(KEY_ENV)
        assert main(_argv(server, tmp_path, [a, b], "again.json")) == 0
        assert server.total_requests == first_requests
        again = json.loads((tmp_path / "out" / "again.json").read_text())
        assert again["judge"]["cost"]["this_invocation"]["calls"] == 0
        assert again["judge"]["cost"]["cached_judgments"] == 2 * n
        assert again["judge"]["pairs"] == judge["pairs"]
        assert again["run_id"] == result["run_id"]

    # The key appears in no written file and no output.
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    written = _all_written_bytes(tmp_path)
    assert any(p.name.endswith(".sqlite") for p, _ in written)
    for path, data in written:
        assert KEY.encode() not in data, path


def test_concurrency_never_exceeds_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 16)
    with ChatServer(latency_s=0.05) as server:
        assert main(_argv(server, tmp_path, [a, b], "c.json", "--concurrency", "3")) == 0
        assert server.total_requests == 32
        assert server.max_in_flight == 3  # reached, never exceeded
        # Keep-alive: each of the 3 slots reuses its connection instead of reconnecting
        # per call (a reconnect per call would cost a handshake and client CPU every time).
        assert server.connections <= 3


def test_exhausted_retries_keep_finished_work_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 4, {0: " FAIL500:3"})
    with ChatServer() as server:
        argv = _argv(server, tmp_path, [a, b], "r.json", "--max-attempts", "2")
        assert main(argv) == 1
        assert "2 of 8 judgments failed after retries" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()  # no partial results file
        seen = len(server.request_log)
        assert main(argv) == 0
        # Only the two failed prompts were asked again (attempt 3 fails, attempt 4 answers).
        resumed = server.request_log[seen:]
        assert len(resumed) == 4 and len(set(resumed)) == 2
        assert all(server.attempts[s] == 4 for s in set(resumed))
        result = json.loads((tmp_path / "out" / "r.json").read_text())
        assert result["judge"]["pairs"][0]["n"] == 4
        assert result["judge"]["cost"]["this_invocation"]["calls"] == 2


def test_run_against_references_through_the_chexbench_cli(tmp_path, monkeypatch):
    from harness.cli import main as chexbench

    monkeypatch.setenv(KEY_ENV, KEY)
    a, _ = _inputs(tmp_path, 6)
    with ChatServer() as server:
        argv = _argv(server, tmp_path, [a], "ref.json")
        argv[0] = "--run"
        assert chexbench(["judge", *argv, "--against-reference"]) == 0
    result = json.loads((tmp_path / "out" / "ref.json").read_text())
    pair = result["judge"]["pairs"][0]
    assert (pair["model_a"], pair["model_b"]) == ("chexagent", "reference")
    # The references carry no quality marker (0): A wins where its quality is above 0.
    assert pair["counts"] == {"win": 4, "tie": 2, "loss": 0}
    assert result["judge"]["against_reference"] is True


def test_a_rejected_key_stops_at_once_without_retrying_or_leaking(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 5)
    with ChatServer(expected_key="sk-the-right-one", reject_bad_key=True) as server:
        rc = main(_argv(server, tmp_path, [a, b], "k.json", "--concurrency", "1"))
        assert rc == 2
        assert server.total_requests == 1  # fatal: no retries, no further items
    err = capsys.readouterr().err
    assert "HTTP 401" in err and KEY not in err
    assert not (tmp_path / "out").exists()


def test_without_the_aiohttp_extra_the_default_httpx_transport_judges(tmp_path, monkeypatch):
    import openai

    def missing_extra(**_kwargs):  # what openai does when `openai[aiohttp]` is not installed
        raise RuntimeError(
            "To use the aiohttp client you must have installed the package with the `aiohttp` extra"
        )

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing_extra)
    monkeypatch.setenv(KEY_ENV, KEY)
    a, b = _inputs(tmp_path, 3, {1: " FAIL429:1"})
    with ChatServer(expected_key=KEY) as server:
        assert main(_argv(server, tmp_path, [a, b], "h.json", "--concurrency", "2")) == 0
        assert server.auth_bad == 0 and server.connections <= 2
    judge = json.loads((tmp_path / "out" / "h.json").read_text())["judge"]
    assert judge["http_transport"] == "httpx"
    assert judge["retries"] == {"429": 2} and judge["pairs"][0]["n"] == 3
