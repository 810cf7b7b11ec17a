"""A judge process killed mid-run loses no finished judgment, and the rerun asks only for
the rest. The judge runs as a real subprocess against the real local server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

from helpers.openai_server import ChatServer, text_rows, write_samples

from harness.cli import main as cli_main


def main(argv: list[str]) -> int:
    """`chexbench judge ...` in this process."""
    return cli_main(["judge", *argv])


KEY_ENV = "CHEXBENCH_JUDGE_TEST_KEY"


def _finished(db_path) -> set[str]:
    if not db_path.is_file():
        return set()
    try:
        with sqlite3.connect(db_path) as db:
            return {
                r[0]
                for r in db.execute("SELECT json_extract(meta, '$.prompt_sha256') FROM responses")
            }
    except sqlite3.OperationalError:  # table not created yet
        return set()


def test_killed_run_resumes_without_losing_or_repeating_judgments(tmp_path, monkeypatch):
    n = 24
    a, b = tmp_path / "a.samples.jsonl", tmp_path / "b.samples.jsonl"
    write_samples(a, text_rows(n, lambda i: f"A {i} quality={i % 3}"))
    write_samples(b, text_rows(n, lambda i: f"B {i} quality=1"))
    db_path = tmp_path / "cache" / "judge_cache.sqlite"
    with ChatServer(latency_s=0.05) as server:
        argv = [
            "--runs",
            str(a),
            str(b),
            "--task",
            "findings_generation",
            "--judge-model",
            "j",
            "--base-url",
            server.base_url,
            "--api-key-env",
            KEY_ENV,
            "--cache",
            str(tmp_path / "cache"),
            "--output",
            str(tmp_path / "out" / "r.json"),
            "--concurrency",
            "2",
            "--no-progress",
            "--bootstrap-samples",
            "100",
        ]
        env = {**__import__("os").environ, KEY_ENV: "sk-resume-test"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "judge", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        try:
            while len(_finished(db_path)) < 8:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "judge subprocess made no progress"
                time.sleep(0.02)
        finally:
            proc.kill()  # SIGKILL: no cleanup handler runs
            proc.wait()
            proc.stderr.close()
        finished = _finished(db_path)
        assert 8 <= len(finished) < 2 * n  # killed mid-run, with work saved
        requests_before = len(server.request_log)

        monkeypatch.setenv(KEY_ENV, "sk-resume-test")
        assert main(argv) == 0
        resumed = server.request_log[requests_before:]
        assert finished.isdisjoint(resumed)  # nothing finished was asked again
        assert len(resumed) == len(set(resumed)) == 2 * n - len(finished)
        assert all(server.successes[s] == 1 for s in finished)
        assert len(_finished(db_path)) == 2 * n

    result = json.loads((tmp_path / "out" / "r.json").read_text())
    pair = result["judge"]["pairs"][0]
    assert pair["n"] == pair["n_judged"] == n
    assert pair["counts"] == {"win": 8, "tie": 8, "loss": 8}
    cost = result["judge"]["cost"]
    assert cost["cached_judgments"] == len(finished)
    assert cost["this_invocation"]["calls"] == 2 * n - len(finished)
