"""One judge call through the `openai` client, with OUR retry policy.

The client's built-in retries are switched off (`max_retries=0`) so that exactly one policy,
recorded in the results, decides: exponential backoff on 408/409/429, 5xx, timeouts and
dropped connections, honouring a server's Retry-After up to the cap. Other errors (bad key,
unknown model) are fatal at once: retrying them only burns time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass

import openai
from openai import AsyncOpenAI

log = logging.getLogger("chexbench.judge")

RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 120.0  # per request

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        d = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))
        if retry_after is not None:
            d = min(self.max_delay_s, max(d, retry_after))
        return d

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class CallResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float


class JudgeFatalError(RuntimeError):
    """A non-retryable API error (authentication, unknown model, bad request)."""


class JudgeCallFailed(RuntimeError):
    """Retries exhausted; the judgment stays missing and a rerun will ask again."""


def _retry_reason(exc: Exception) -> str | None:
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code in RETRYABLE_STATUS or code >= 500:
            return str(code)
        return None
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return "malformed_response"  # a 200 whose body is not a chat completion
    return None


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _read_completion(data: object) -> tuple[str, int, int]:
    """(answer text, prompt tokens, completion tokens) of a chat-completion body; a body of
    another shape raises ValueError, which the retry policy treats as a malformed response."""
    try:
        message = data["choices"][0]["message"]  # type: ignore[index]
        text = message.get("content") or ""
        usage = data.get("usage") or {}  # type: ignore[union-attr]
        return str(text), int(usage.get("prompt_tokens") or 0), int(
            usage.get("completion_tokens") or 0)
    except (TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"not a chat completion: {str(data)[:200]!r}") from exc


def _http_client(timeout_s: float) -> tuple[str, openai.DefaultAsyncHttpxClient | None]:
    """(transport name, HTTP client for AsyncOpenAI): the openai library's own aiohttp
    transport (`openai[aiohttp]`, its README's "With aiohttp") where installed, else its
    default httpx one. Same requests, errors and proxy handling; the aiohttp transport costs
    about 1.6 instead of 2.6 ms of event-loop CPU per call, which decides the throughput at
    concurrency 16 (bench/bench_judge.py). The connection pool keeps up to 100 keep-alive
    connections (openai's DEFAULT_CONNECTION_LIMITS), so each concurrent slot reuses one."""
    try:
        return "aiohttp", openai.DefaultAioHttpClient(timeout=timeout_s)
    except RuntimeError:  # the aiohttp extra is not installed
        log.info("openai[aiohttp] not installed: using the default httpx transport")
        return "httpx", None


class JudgeClient:
    def __init__(self, model: str, api_key: str, base_url: str | None, seed: int,
                 max_tokens: int, policy: RetryPolicy):
        self.model = model
        self.seed = seed
        self.max_tokens = max_tokens
        self.policy = policy
        self.retries: Counter[str] = Counter()
        self.transport, http_client = _http_client(policy.timeout_s)
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                   timeout=policy.timeout_s, http_client=http_client)

    async def complete(self, prompt: str, label: str = "") -> CallResult:
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                # The chat-completions request through the client's documented low-level
                # `post` (README: "Making custom/undocumented requests"): same auth, timeout
                # and error classes as `chat.completions.create`, without its per-call
                # TypedDict transform and pydantic model building, which made the client
                # CPU-bound at concurrency 16 (bench/bench_judge.py).
                data = await self._client.post(
                    "/chat/completions",
                    body={
                        "model": self.model,
                        "messages": [{"role": "user", "content": prompt}],
                        "temperature": 0,
                        "seed": self.seed,
                        "max_tokens": self.max_tokens,
                    },
                    cast_to=object,
                )
                text, p_tok, c_tok = _read_completion(data)
                return CallResult(text=text, prompt_tokens=p_tok, completion_tokens=c_tok,
                                  attempts=attempt, latency_s=time.perf_counter() - start)
            except Exception as exc:  # classified below; unknown kinds are re-raised
                reason = _retry_reason(exc)
                if reason is None:
                    if isinstance(exc, openai.APIStatusError):
                        raise JudgeFatalError(
                            f"judge API answered HTTP {exc.status_code} for model "
                            f"{self.model!r}: {exc.message}") from exc
                    raise
                self.retries[reason] += 1
                if attempt >= self.policy.max_attempts:
                    raise JudgeCallFailed(
                        f"{label}: gave up after {attempt} attempts (last: {reason})") from exc
                wait = self.policy.delay(attempt, _retry_after(exc))
                log.info("%s: attempt %d failed (%s); retrying in %.2fs", label, attempt,
                         reason, wait)
                await asyncio.sleep(wait)

    async def close(self) -> None:
        await self._client.close()
