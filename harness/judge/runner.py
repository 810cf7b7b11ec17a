"""Planning the calls (both A/B orders per item) and running them concurrently.

Each judgment is committed to the cache by a single writer thread the moment it returns, so
the event loop keeps other requests in flight while SQLite fsyncs, and a kill loses nothing
that came back. Identical prompts (say, two runs that produced the same text) are asked once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from harness.judge.cache import Judgment, JudgmentCache, judgment_key, now_iso
from harness.judge.client import CallResult, JudgeCallFailed, JudgeClient, JudgeFatalError
from harness.judge.pairs import PairItem
from harness.judge.prompt import Template, parse_verdict


@dataclass(frozen=True)
class JudgeSettings:
    judge_model: str
    seed: int
    max_tokens: int


@dataclass(frozen=True)
class Request:
    key: str
    prompt: str
    label: str  # "<A> vs <B>, item <id>, order AB|BA" (for logs)


@dataclass
class PlannedPair:
    model_a: str
    model_b: str
    items: list[PairItem]
    keys_ab: list[str] = field(default_factory=list)  # Assistant 1 = A
    keys_ba: list[str] = field(default_factory=list)  # Assistant 1 = B
    dropped: dict[str, int] = field(default_factory=dict)


def plan_requests(pairs: Sequence[PlannedPair], template: Template,
                  settings: JudgeSettings) -> dict[str, Request]:
    """Fill each pair's keys for both orders; return the distinct requests by key."""
    requests: dict[str, Request] = {}
    for pair in pairs:
        pair.keys_ab, pair.keys_ba = [], []
        for item in pair.items:
            for order, r1, r2, keys in (
                ("AB", item.prediction_a, item.prediction_b, pair.keys_ab),
                ("BA", item.prediction_b, item.prediction_a, pair.keys_ba),
            ):
                key = judgment_key(settings.judge_model, template.sha256, settings.seed,
                                   settings.max_tokens, item.reference, r1, r2)
                keys.append(key)
                if key not in requests:
                    requests[key] = Request(
                        key, template.render(item.reference, r1, r2),
                        f"{pair.model_a} vs {pair.model_b}, item {item.item_id}, order {order}")
    return requests


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


@dataclass
class RunOutcome:
    new: dict[str, Judgment]
    failed: dict[str, str]  # key -> reason


async def run_requests(todo: Sequence[Request], client: JudgeClient, cache: JudgmentCache,
                       template: Template, concurrency: int, invocation: str,
                       progress: bool = True) -> RunOutcome:
    """Ask the judge for every request in `todo`, never more than `concurrency` at once."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-cache-writer")
    outcome = RunOutcome({}, {})
    bar = tqdm(total=len(todo), desc="judging", unit="call", disable=not progress)
    stopping = False

    async def one(req: Request) -> None:
        nonlocal stopping
        try:
            async with sem:
                if stopping:
                    return
                try:
                    res: CallResult = await client.complete(req.prompt, req.label)
                except JudgeFatalError:
                    stopping = True  # set before the semaphore is released: no waiter
                    raise  # starts another call
        except JudgeCallFailed as exc:
            outcome.failed[req.key] = str(exc)
            return
        judgment = Judgment(
            key=req.key, judge_model=client.model, template_sha256=template.sha256,
            prompt_sha256=prompt_sha256(req.prompt), response=res.text,
            verdict=parse_verdict(res.text), prompt_tokens=res.prompt_tokens,
            completion_tokens=res.completion_tokens, attempts=res.attempts,
            latency_s=round(res.latency_s, 4), created_at=now_iso(), invocation=invocation)
        await loop.run_in_executor(writer, cache.put, judgment)
        outcome.new[req.key] = judgment
        bar.update(1)

    tasks = [asyncio.create_task(one(r)) for r in todo]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # A fatal error (bad key, unknown model) or an interrupt: stop asking; what already
        # came back is committed.
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        bar.close()
        writer.shutdown(wait=True)
    return outcome
