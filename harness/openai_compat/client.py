"""One request to an OpenAI-compatible server through the `openai` client, with OUR policy.

The client's built-in retries are off (`max_retries=0`) so that exactly one policy, recorded
by the caller, decides: exponential backoff on 408/409/429, 5xx, timeouts, dropped
connections and 200s whose body is not the expected shape, raised to a server's Retry-After
up to the cap. Other 4xx (bad key, unknown model) and a 200 with invalid `usage` are fatal at
once: retrying them only burns time (and, for bad usage, money).

Every attempt has a total deadline (`timeout_s`, connect to last byte): the HTTP stacks' own
timeouts bound each read, so a server trickling its answer a few bytes at a time would
otherwise hold a request open indefinitely. Every message built from a server's answer is
masked (`secrets.mask`): a server may echo the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from openai import AsyncOpenAI

from harness.openai_compat.endpoint import endpoint_host, normalise_base_url
from harness.openai_compat.secrets import mask, register_secret
from harness.openai_compat.usage import InvalidUsage, Usage, read_usage

log = logging.getLogger("chexbench.openai_compat")

RETRYABLE_STATUS = {408, 409, 429}
CHAT_PATH = "/chat/completions"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 120.0  # total per attempt: connect, send, wait, read the last byte
    # Total per request, attempts and waits included (None: only the attempts bound it). A
    # request still unanswered then is given up (CallFailed) and asked again by a rerun.
    deadline_s: float | None = None

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        d = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))
        if retry_after is not None:
            d = min(self.max_delay_s, max(d, retry_after))
        return d

    def worst_case_s(self) -> float:
        """The longest one request can take under this policy: every attempt runs to its
        deadline and every wait is the cap (or the total deadline, when it is shorter). A claim
        on a request is held at most this long."""
        worst = self.max_attempts * self.timeout_s + (self.max_attempts - 1) * self.max_delay_s
        return worst if self.deadline_s is None else min(worst, self.deadline_s)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class CallResult:
    body: dict[str, Any]  # the response JSON, as received
    usage: Usage
    attempts: int
    latency_s: float  # of the attempt that answered


class FatalAPIError(RuntimeError):
    """A non-retryable answer (authentication, unknown model, bad request): stop asking."""


class InvalidUsageError(FatalAPIError):
    """A 200 whose `usage` cannot be booked. The call was answered and may be billed, so it
    carries what a ledger records about it."""

    def __init__(self, message: str, attempts: int, latency_s: float):
        super().__init__(message)
        self.attempts = attempts
        self.latency_s = latency_s


class CallFailed(RuntimeError):
    """Retries exhausted; the request stays unanswered and a rerun will ask again."""


class MalformedResponse(ValueError):
    """A 200 whose body is not the expected shape (retried: proxies return such pages)."""


def chat_text(body: Mapping[str, Any]) -> str:
    """The answer text of a chat-completion body; MalformedResponse for any other shape."""
    try:
        message = body["choices"][0]["message"]
        text = message.get("content")
    except (TypeError, KeyError, IndexError, AttributeError):
        raise MalformedResponse(f"not a chat completion: {str(body)[:200]!r}") from None
    if text is not None and not isinstance(text, str):
        raise MalformedResponse(f"message content is {type(text).__name__}, not text")
    return text or ""


def retry_reason(exc: BaseException) -> str | None:
    """Why an attempt may be retried ('429', 'timeout', ...), or None if it must not be."""
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        return str(code) if code in RETRYABLE_STATUS or code >= 500 else None
    if isinstance(
        exc,
        openai.APIResponseValidationError
        | MalformedResponse
        | json.JSONDecodeError
        | UnicodeDecodeError,
    ):
        return "malformed_response"  # a 200 whose body is not the expected JSON
    return None


def retry_after_s(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """A server's requested wait: `retry-after-ms`, or `retry-after` in seconds or as an HTTP
    date. Missing, negative or unreadable values give None (the policy's own delay applies)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            wait = float(value) / 1000
        except ValueError:
            wait = None
        if wait is not None and 0 <= wait < float("inf"):
            return wait
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        wait = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = (when - (now or datetime.now(UTC))).total_seconds()
        wait = max(wait, 0.0)
    return wait if 0 <= wait < float("inf") else None


def _http_client(timeout_s: float) -> tuple[str, Any]:
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


class OpenAICompatClient:
    """Requests to one endpoint with one API key under one RetryPolicy; counts retries."""

    def __init__(self, base_url: str, api_key: str, policy: RetryPolicy):
        self.base_url = normalise_base_url(base_url)  # refuses credentials in the URL
        self.host = endpoint_host(self.base_url)
        self.policy = policy
        self.retries: Counter[str] = Counter()
        register_secret(api_key)
        self.transport, http_client = _http_client(policy.timeout_s)
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=policy.timeout_s,
            http_client=http_client,
        )

    async def post(
        self,
        body: dict[str, Any],
        label: str = "",
        path: str = CHAT_PATH,
        validate: Callable[[Mapping[str, Any]], Any] = chat_text,
    ) -> CallResult:
        """POST `body` to `path` until it answers, the policy gives up (CallFailed) or the
        server refuses (FatalAPIError). `validate` checks the body's shape (raising
        MalformedResponse); `usage` is checked after it. With `policy.deadline_s`, the whole
        request (every attempt and wait) must end within it, else CallFailed."""
        if self.policy.deadline_s is None:
            return await self._post(body, label, path, validate)
        try:
            async with asyncio.timeout(self.policy.deadline_s):
                return await self._post(body, label, path, validate)
        except TimeoutError:
            self.retries["deadline"] += 1
            raise CallFailed(
                mask(f"{label}: no answer within the {self.policy.deadline_s:g}s request deadline")
            ) from None

    async def _post(
        self,
        body: dict[str, Any],
        label: str,
        path: str,
        validate: Callable[[Mapping[str, Any]], Any],
    ) -> CallResult:
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                async with asyncio.timeout(self.policy.timeout_s):
                    # The documented low-level `post` (README: "Making custom/undocumented
                    # requests"): the same auth, timeouts and error classes as
                    # `chat.completions.create`, without its per-call TypedDict transform and
                    # pydantic model building, which made the client CPU-bound at
                    # concurrency 16 (bench/bench_judge.py).
                    data = await self._client.post(path, body=body, cast_to=object)
                if not isinstance(data, dict):
                    raise MalformedResponse(f"not a JSON object: {str(data)[:200]!r}")
                validate(data)
                usage = read_usage(data)
                return CallResult(
                    body=data, usage=usage, attempts=attempt, latency_s=time.perf_counter() - start
                )
            except InvalidUsage as exc:
                raise InvalidUsageError(
                    mask(
                        f"{label}: {self.host} answered with {exc}; its cost cannot be booked, "
                        "so the run stops (the call is in the ledger without tokens)"
                    ),
                    attempt,
                    time.perf_counter() - start,
                ) from None
            except Exception as exc:  # classified below; unknown kinds are re-raised
                reason = retry_reason(exc)
                if reason is None:
                    if isinstance(exc, openai.APIStatusError):
                        raise FatalAPIError(
                            mask(
                                f"{self.host} answered HTTP {exc.status_code} for model "
                                f"{body.get('model')!r}: {_server_message(exc)}"
                            )
                        ) from None
                    raise
                self.retries[reason] += 1
                if attempt >= self.policy.max_attempts:
                    raise CallFailed(
                        mask(f"{label}: gave up after {attempt} attempts (last: {reason})")
                    ) from None
                headers = getattr(getattr(exc, "response", None), "headers", None)
                wait = self.policy.delay(attempt, retry_after_s(headers))
                log.info(
                    "%s",
                    mask(f"{label}: attempt {attempt} failed ({reason}); retrying in {wait:.2f}s"),
                )
                await asyncio.sleep(wait)

    async def close(self) -> None:
        await self._client.close()


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own error message (what to fix), else openai's summary of the answer."""
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
        if message:
            return str(message)[:500]
    return exc.message[:500]
