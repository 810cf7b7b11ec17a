"""Judge throughput against a local chat-completions server with a fixed 100 ms latency.

200 pairs x 2 orders = 400 calls at concurrency 16: the ideal wall time is
400 * 0.1 / 16 = 2.5 s. Prints the measured time and its ratio to the ideal (target <= 1.5x),
then the time of the same command again, served entirely from the cache (0 calls).
The server (tests/support/helpers/openai_server.py) runs in its own process, as a remote judge would.

    .venv/bin/python bench/bench_judge.py [--pairs 200] [--latency 0.1] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "support"  # the tests' shared helpers, importable as `helpers.*`
sys.path[:0] = [str(ROOT), str(TESTS)]

from helpers.openai_server import text_rows, write_samples  # noqa: E402

from harness.cli import main as cli_main  # noqa: E402


def judge_main(argv: list[str]) -> int:
    return cli_main(["judge", *argv])


KEY_ENV = "CHEXBENCH_BENCH_JUDGE_KEY"


def _stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    os.environ[KEY_ENV] = "sk-bench-local"
    server = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "helpers" / "openai_server.py"),
            "--latency",
            str(args.latency),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            a, b = tmp / "a.samples.jsonl", tmp / "b.samples.jsonl"
            write_samples(a, text_rows(args.pairs, lambda i: f"report A {i} quality={i % 3}"))
            write_samples(b, text_rows(args.pairs, lambda i: f"report B {i} quality=1"))
            argv = [
                "--runs",
                str(a),
                str(b),
                "--task",
                "findings_generation",
                "--judge-model",
                "bench",
                "--base-url",
                base_url,
                "--api-key-env",
                KEY_ENV,
                "--cache",
                str(tmp / "cache"),
                "--concurrency",
                str(args.concurrency),
                "--no-progress",
                "--bootstrap-samples",
                "1000",
            ]
            # Warm-up on other items and another cache: the one-off imports (openai's lazy
            # modules, matplotlib, the statistics stack) stay out of the timed runs.
            w = tmp / "warm.samples.jsonl"
            write_samples(w, text_rows(8, lambda i: f"warm-up {i}"))
            t_w = time.perf_counter()
            judge_main(
                [
                    *argv[:1],
                    str(w),
                    str(b),
                    *argv[3:],
                    "--cache",
                    str(tmp / "warm"),
                    "--output",
                    str(tmp / "warm" / "w.json"),
                ]
            )
            warm_s = time.perf_counter() - t_w
            warm = _stats(base_url)
            warm_calls = warm["total_requests"]

            cpu0, t0 = time.process_time(), time.perf_counter()
            rc = judge_main([*argv, "--output", str(tmp / "out" / "first.json")])
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            first = _stats(base_url)
            for k in ("total_requests", "connections", "service_s", "server_cpu_s"):
                first[k] -= warm[k]
            cpu1, t1 = time.process_time(), time.perf_counter()
            rc2 = judge_main([*argv, "--output", str(tmp / "out" / "cached.json")])
            cached, cached_cpu = time.perf_counter() - t1, time.process_time() - cpu1
            transport = json.loads((tmp / "out" / "first.json").read_text())["judge"][
                "http_transport"
            ]
            cached_calls = _stats(base_url)["total_requests"] - warm_calls - first["total_requests"]
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()
    if rc or rc2:
        print(f"judge failed (rc {rc}, {rc2})", file=sys.stderr)
        return 1
    ideal = args.pairs * 2 * args.latency / args.concurrency
    load = os.getloadavg()[0]
    print(
        f"\n{args.pairs} pairs x 2 orders = {first['total_requests']} calls, latency "
        f"{args.latency * 1000:.0f} ms, concurrency {args.concurrency} "
        f"(max in flight seen by the server: {first['max_in_flight']})"
    )
    print(
        f"judge wall time:  {wall:.2f} s   ideal {ideal:.2f} s   ratio {wall / ideal:.2f}x "
        f"(target <= 1.5x) -> {'OK' if wall / ideal <= 1.5 else 'SLOWER THAN TARGET'}"
    )
    n = max(first["total_requests"], 1)
    print(
        f"  client CPU time {cpu:.2f} s ({1000 * cpu / n:.1f} ms/call); of which the calls "
        f"~{1000 * (cpu - cached_cpu) / n:.1f} ms/call (minus the cached rerun's CPU); "
        f"1-min load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    calls_phase = wall - cached  # the cached rerun does everything but the calls
    print(
        f"  of which calls ~{calls_phase:.2f} s (wall minus the cached rerun): ratio "
        f"{calls_phase / ideal:.2f}x; openai client transport: {transport}"
    )
    print(
        f"  server: {first['service_s'] / n * 1000:.1f} ms per answer (latency included), "
        f"CPU {first['server_cpu_s']:.2f} s, {first['connections']} connections opened "
        "(keep-alive: at most one per slot)"
    )
    print(
        f"cached rerun:     {cached:.2f} s   calls made: {cached_calls}   "
        f"ratio to first run {cached / wall:.2f}x"
    )
    print(f"warm-up (imports + 16 calls, not timed above): {warm_s:.2f} s")
    print("(wall times include planning, SQLite commits, bootstrap CIs, chart and results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
