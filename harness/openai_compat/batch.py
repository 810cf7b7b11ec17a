"""Many requests through one client and one shared cache: each paid for once, by one process.

`concurrency` workers call the server. Before paying for requests this process claims them in
the cache (`RequestCache.claim_many`, a batch of `concurrency` keys per transaction, so claims
rarely wait behind the fsync of a stored answer): an answer already there is taken; a key
another live process is asking for is set aside and claimed again every `poll_s` (its answer
usually arrives; if its owner fails or dies the claim is released or taken over, and this
process asks); the rest are called. Each answer is stored with its ledger row and its claim
released in one transaction on the cache's own thread, off the event loop, while the worker
moves on. A retry's backoff keeps the worker's slot, so `concurrency` bounds the requests in
flight even while a server throttles.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from harness.openai_compat.cache import CachedResponse, RequestCache
from harness.openai_compat.client import (
    CHAT_PATH,
    CallFailed,
    InvalidUsageError,
    OpenAICompatClient,
    chat_text,
)

log = logging.getLogger("chexbench.openai_compat")

# A claimed key waits at most one call before a worker takes it, then takes at most one call:
# the lease is twice the retry policy's worst case, plus time to store and schedule.
CLAIM_MARGIN_S = 60.0


@dataclass(frozen=True)
class PlannedRequest:
    key: str  # cache.request_key(base_url, body, context)
    body: dict[str, Any]
    label: str = ""  # for messages: which item, which order
    meta: dict[str, Any] = field(default_factory=dict)  # kept beside the answer (no secrets)


@dataclass
class BatchOutcome:
    paid: dict[str, CachedResponse] = field(default_factory=dict)  # asked by this process
    by_others: dict[str, CachedResponse] = field(default_factory=dict)  # answered meanwhile
    failed: dict[str, str] = field(default_factory=dict)  # key -> why (retries exhausted)


async def fetch_all(
    requests: Sequence[PlannedRequest],
    client: OpenAICompatClient,
    cache: RequestCache,
    *,
    invocation: str,
    concurrency: int,
    path: str = CHAT_PATH,
    validate: Callable[[Mapping[str, Any]], Any] = chat_text,
    on_done: Callable[[str], None] | None = None,
    poll_s: float = 0.25,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> BatchOutcome:
    """Answer every request from the cache or the server. Raises FatalAPIError (after
    recording the call, for invalid usage) and stops starting calls; claims are released
    whatever happens.

    `prepare` turns a planned body into the body sent, in a worker thread, just before the
    call (a model under test plans bodies that name its images and inlines them only here,
    so at most `concurrency` large bodies are in memory); the key stays the planned one.
    `keep` turns an answer into what the cache stores (a compact form of a large answer); it
    must not raise, since the call is already paid for."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    loop = asyncio.get_running_loop()
    db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-cache")
    lease_s = 2 * client.policy.worst_case_s() + CLAIM_MARGIN_S
    outcome = BatchOutcome()
    queue: deque[PlannedRequest] = deque(requests)  # not yet claimed
    ready: deque[PlannedRequest] = deque()  # claimed by this process, not yet asked
    waiting: dict[str, PlannedRequest] = {}  # claimed by another live process
    seen_busy: set[str] = set()
    claiming = asyncio.Lock()
    stores: list[asyncio.Future] = []
    stopping = False

    async def in_db(fn, *args, **kwargs):
        return await loop.run_in_executor(db, partial(fn, *args, **kwargs))

    def done(key: str) -> None:
        if on_done is not None:
            on_done(key)

    async def refill() -> None:
        async with claiming:
            if ready or stopping:
                return  # another worker refilled meanwhile
            if not queue and waiting:
                await asyncio.sleep(poll_s)  # then claim the set-aside keys again
                queue.extend(waiting.values())
                waiting.clear()
            batch = [queue.popleft() for _ in range(min(concurrency, len(queue)))]
            if not batch:
                return
            claims = await in_db(cache.claim_many, [r.key for r in batch], lease_s)
            for req in batch:
                claim = claims[req.key]
                if claim.state == "mine":
                    ready.append(req)
                elif claim.state == "cached":
                    outcome.by_others[req.key] = claim.cached
                    done(req.key)
                else:
                    waiting[req.key] = req
                    if req.key not in seen_busy:
                        seen_busy.add(req.key)
                        log.info(
                            "%s: another process (%s) is asking; waiting for its answer",
                            req.label,
                            claim.holder,
                        )

    def stored(key: str, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            outcome.paid[key] = fut.result()
            done(key)

    async def call(req: PlannedRequest) -> None:
        model = str(req.body.get("model", ""))
        try:
            body = (
                req.body if prepare is None else await loop.run_in_executor(None, prepare, req.body)
            )
            res = await client.post(body, req.label, path=path, validate=validate)
        except CallFailed as exc:
            outcome.failed[req.key] = str(exc)
            await in_db(cache.release, req.key)
            return
        except InvalidUsageError as exc:
            await in_db(
                cache.record_call,
                req.key,
                base_url=client.base_url,
                model=model,
                usage=None,
                attempts=exc.attempts,
                latency_s=exc.latency_s,
                invocation=invocation,
                note=str(exc),
            )
            raise
        fut = loop.run_in_executor(
            db,
            partial(
                cache.store,
                req.key,
                base_url=client.base_url,
                model=model,
                body=res.body if keep is None else keep(res.body),
                usage=res.usage,
                attempts=res.attempts,
                latency_s=res.latency_s,
                invocation=invocation,
                meta=req.meta,
            ),
        )
        fut.add_done_callback(partial(stored, req.key))
        stores.append(fut)

    async def worker() -> None:
        nonlocal stopping
        while not stopping:
            if ready:
                try:
                    await call(ready.popleft())
                except BaseException:
                    stopping = True  # before this slot frees: no worker starts another call
                    raise
            elif queue or waiting or claiming.locked():
                await refill()
            else:
                return

    tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(requests)))]
    try:
        await asyncio.gather(*tasks)
        await asyncio.gather(*stores)
    except BaseException:
        # A fatal answer (bad key, unknown model, invalid usage) or an interrupt: stop
        # asking; whatever already came back is committed (the cache thread finishes).
        stopping = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        db.shutdown(wait=True)
        cache.release_all()
    return outcome
