"""A real chat-completions HTTP server on 127.0.0.1 for judge tests and the benchmark.

It speaks enough of the OpenAI wire format for the real `openai` client, and scripts its
behaviour from markers inside the judged texts, so a test states the behaviour in its data:

- `quality=N` in a report: the report with the higher N is better (equal N: equal);
- `BIAS` in a report: the judge always prefers Assistant 1 (a position-biased judge);
- `MALFORMED` in the reference: the answer's last line is not a label;
- `FAIL429:k`, `FAIL500:k`, `SLOW:k`, `GARBAGE:k`, `TRICKLE:k` in the reference: the first k
  attempts of that prompt get a 429, a 500, no answer within the client's timeout, a 200
  whose body is not JSON, or a valid answer (`TRICKLED_TEXT`) sent a few bytes at a time
  over `trickle_s` seconds, each gap far shorter than any read timeout;
- `USAGE=<json>` in the reference: the answer reports `prompt_tokens` as that raw JSON
  literal (`1e400`, `-40000000`, `12.5`, ...).

Server-wide behaviours: `invert` (another judge: better and worse swapped), `echo_key_401`
(every request gets a 401 whose message quotes the presented key, as some proxies do), and
`gate_clients=N` (hold every answer until requests carrying N distinct keys have arrived, so
that N client processes are provably in flight together).

It counts what a test needs to check: requests per prompt, paid answers per prompt, in-flight
maximum, the `usage` it reported, and whether the Authorization header carried the expected key.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRICKLED_TEXT = "Trickled answer.\nAssistant 1 is better than Assistant 2"
LABELS = {
    "better": "Assistant 1 is better than Assistant 2",
    "worse": "Assistant 1 is worse than Assistant 2",
    "equal": "Assistant 1 is equal to Assistant 2",
}


def _between(text: str, start: str, end: str) -> str:
    i = text.index(start) + len(start)
    return text[i : text.index(end, i)].strip()


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """(reference, report1, report2) from a Figure 8 prompt."""
    ref = _between(prompt, "[Reference Report]\n", "\n[End of Reference Report]")
    r1 = _between(prompt, "[Assistant 1]\n", "\n[Assistant 1]")
    r2 = _between(prompt, "[Assistant 2]\n", "\n[End of Assistant 2]")
    return ref, r1, r2


def scripted_verdict(r1: str, r2: str) -> str:
    if "BIAS" in r1 or "BIAS" in r2:
        return "better"
    q1 = int(m.group(1)) if (m := re.search(r"quality=(\d+)", r1)) else 0
    q2 = int(m.group(1)) if (m := re.search(r"quality=(\d+)", r2)) else 0
    return "better" if q1 > q2 else "worse" if q1 < q2 else "equal"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops bursts of concurrent connects

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is fine
            super().handle_error(request, client_address)


class ChatServer:
    def __init__(
        self,
        latency_s: float = 0.0,
        slow_s: float = 2.0,
        expected_key: str | None = None,
        reject_bad_key: bool = False,
        trickle_s: float = 30.0,
        invert: bool = False,
        echo_key_401: bool = False,
        gate_clients: int = 0,
        gate_timeout_s: float = 120.0,
    ):
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.expected_key = expected_key
        self.reject_bad_key = reject_bad_key
        self.trickle_s = trickle_s
        self.invert = invert
        self.echo_key_401 = echo_key_401
        self.gate_clients = gate_clients
        self.gate_timeout_s = gate_timeout_s
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()  # prompt sha -> requests received
        self.successes: Counter[str] = Counter()  # prompt sha -> verdicts returned (200 + usage)
        self.statuses: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.usage_prompt = 0
        self.usage_completion = 0
        self.auth_ok = 0
        self.auth_bad = 0
        self.request_log: list[str] = []  # prompt sha per request, arrival order
        self.service_s = 0.0  # summed time from reading a request to sending its answer
        self.connections = 0  # connections that carried requests: keep-alive reuses them
        self.trickles_completed = 0  # trickled answers sent to the last byte
        self.trickles_abandoned = 0  # trickled answers the client hung up on
        self.paid_by_client: Counter[str] = Counter()  # sha of the presented key -> answers
        self.gate = threading.Event()
        self.gate_opened_by_clients = False
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as production HTTP servers set it: with Nagle on, the body (a second
            # small write after the headers) waits for the client's delayed ACK, adding ~40 ms
            # to every answer, so the "fixed latency" would not be fixed.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                if not getattr(self, "counted", False):  # first request on this connection
                    self.counted = True
                    with server.lock:
                        server.connections += 1
                server._handle(self)

            def do_GET(self):  # counters, for a client in another process (the benchmark)
                server._send(self, 200, server.stats())

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        self.base_url = self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def total_requests(self) -> int:
        return sum(self.attempts.values())

    def stats(self) -> dict:
        with self.lock:
            return {
                "total_requests": self.total_requests,
                "max_in_flight": self.max_in_flight,
                "statuses": dict(self.statuses),
                "usage_prompt": self.usage_prompt,
                "usage_completion": self.usage_completion,
                "service_s": round(self.service_s, 4),
                "connections": self.connections,
                # This process's CPU: tells a benchmark whether the server kept up.
                "server_cpu_s": round(time.process_time(), 4),
            }

    # -- request handling ------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        t0 = time.perf_counter()
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))))
        prompt = body["messages"][-1]["content"]
        sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        presented = h.headers.get("Authorization", "").removeprefix("Bearer ")
        client = hashlib.sha256(presented.encode("utf-8")).hexdigest()[:12]
        with self.lock:
            self.attempts[sha] += 1
            attempt = self.attempts[sha]
            self.request_log.append(sha)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            key_ok = presented == self.expected_key
            if self.expected_key is not None:
                self.auth_ok += key_ok
                self.auth_bad += not key_ok
            self.paid_by_client.setdefault(client, 0)
            if self.gate_clients and len(self.paid_by_client) >= self.gate_clients:
                self.gate_opened_by_clients = True
                self.gate.set()
        try:
            if self.echo_key_401:
                self._count("401")
                return self._send(
                    h,
                    401,
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {presented}. You can find your "
                            "API key at https://platform.openai.com/account/api-keys.",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                )
            if self.reject_bad_key and not key_ok:
                self._count("401")
                return self._send(
                    h,
                    401,
                    {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                        }
                    },
                )
            if self.gate_clients and not self.gate.wait(self.gate_timeout_s):
                self.gate.set()  # give up waiting: the test sees gate_opened_by_clients False
            if self.latency_s:
                time.sleep(self.latency_s)
            ref, r1, r2 = parse_prompt(prompt)
            failure = self._scripted_failure(ref, attempt)
            if failure == "SLOW":
                time.sleep(self.slow_s)  # the client has given up by now
                self._count("slow")
                return self._send(h, 200, self._completion(body, "too late", sha, count=False))
            if failure == "TRICKLE":
                return self._trickle(h, self._completion(body, TRICKLED_TEXT, sha, count=False))
            if failure == "FAIL429":
                self._count("429")
                return self._send(
                    h, 429, {"error": {"message": "rate limited", "type": "rate_limit"}}
                )
            if failure == "FAIL500":
                self._count("500")
                return self._send(h, 500, {"error": {"message": "boom", "type": "server"}})
            if failure == "GARBAGE":
                self._count("garbage")
                return self._send_raw(h, 200, b"<html>not json</html>", "application/json")
            if "MALFORMED" in ref:
                text = "Both reports are similar.\nI cannot decide."
            else:
                verdict = scripted_verdict(r1, r2)
                if self.invert:
                    verdict = {"better": "worse", "worse": "better"}.get(verdict, verdict)
                text = f"Analysis of the two reports.\n{LABELS[verdict]}"
            self._count("200")
            with self.lock:
                self.paid_by_client[client] += 1
            usage = re.search(r"USAGE=(\S+)", ref)
            if usage:  # a raw literal json.dumps would refuse or rewrite (1e400 -> Infinity)
                payload = self._completion(body, text, sha, count_usage=False)
                payload["usage"]["prompt_tokens"] = "__USAGE__"
                raw = json.dumps(payload).replace('"__USAGE__"', usage.group(1))
                return self._send_raw(h, 200, raw.encode(), "application/json")
            self._send(h, 200, self._completion(body, text, sha))
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.lock:
                self.in_flight -= 1
                self.service_s += time.perf_counter() - t0

    def _trickle(self, h: BaseHTTPRequestHandler, payload: dict) -> None:
        """A valid answer, a few bytes every trickle_s/100 seconds: every read of the client
        gets data long before a read timeout, but the whole answer takes trickle_s."""
        data = json.dumps(payload).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.flush()
        pieces = 100
        step = -(-len(data) // pieces)
        try:
            for start in range(0, len(data), step):
                h.wfile.write(data[start : start + step])
                h.wfile.flush()
                time.sleep(self.trickle_s / pieces)
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                self.trickles_abandoned += 1
            raise
        with self.lock:
            self.trickles_completed += 1

    def _scripted_failure(self, ref: str, attempt: int) -> str | None:
        for kind in ("FAIL429", "FAIL500", "SLOW", "GARBAGE", "TRICKLE"):
            m = re.search(kind + r":(\d+)", ref)
            if m and attempt <= int(m.group(1)):
                return kind
        return None

    def _count(self, status: str) -> None:
        with self.lock:
            self.statuses[status] += 1

    def _completion(
        self, body: dict, text: str, sha: str, count: bool = True, count_usage: bool = True
    ) -> dict:
        p_tok = len(body["messages"][-1]["content"].split())
        c_tok = len(text.split())
        if count:
            with self.lock:
                if count_usage:
                    self.usage_prompt += p_tok
                    self.usage_completion += c_tok
                self.successes[sha] += 1
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {
                "prompt_tokens": p_tok,
                "completion_tokens": c_tok,
                "total_tokens": p_tok + c_tok,
            },
        }

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        ChatServer._send_raw(h, status, json.dumps(payload).encode(), "application/json")

    @staticmethod
    def _send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def write_samples(path, rows: list[dict]) -> None:
    """A per-sample JSONL as `chexbench run` writes it (text rows)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def text_rows(
    n: int,
    prediction,
    reference=lambda i: f"reference findings {i}",
    task: str = "chexbench_findings_generation",
) -> list[dict]:
    return [
        {
            "task": task,
            "item_id": f"findings_generation/{i}",
            "doc_id": i,
            "dataset": "mimic_cxr",
            "cluster_id": f"p{i % 5}",
            "prediction": prediction(i),
            "reference": reference(i),
        }
        for i in range(n)
    ]


if __name__ == "__main__":
    # Serve in its own process (so the client under test does not share its GIL): prints the
    # base URL, then serves until stdin closes.
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    opts = ap.parse_args()
    srv = ChatServer(latency_s=opts.latency)
    print(srv.start(), flush=True)
    sys.stdin.read()
    srv.stop()
