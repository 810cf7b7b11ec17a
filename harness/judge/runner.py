"""Planning the judge's calls (both A/B orders per item) and running them.

Each order of each item is one chat-completions request; its cache key covers the endpoint,
every request field (judge model, the rendered prompt, temperature, seed, max_tokens) and the
template hash. Identical requests (two runs that produced the same text) are asked once. The
calls themselves go through `harness.openai_compat.batch.fetch_all`: bounded concurrency,
each answer committed the moment it returns, and claims so that judges sharing a cache never
pay twice for one judgment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from harness.judge.pairs import PairItem
from harness.judge.prompt import Template
from harness.openai_compat.batch import BatchOutcome, PlannedRequest, fetch_all
from harness.openai_compat.cache import RequestCache, request_key
from harness.openai_compat.client import OpenAICompatClient


@dataclass(frozen=True)
class JudgeSettings:
    judge_model: str
    seed: int
    max_tokens: int
    base_url: str  # resolved and normalised (harness.openai_compat.endpoint)

    def body(self, prompt: str) -> dict[str, Any]:
        """The chat-completions request: one user message, greedy."""
        return {
            "model": self.judge_model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
        }


@dataclass
class PlannedPair:
    model_a: str
    model_b: str
    items: list[PairItem]
    keys_ab: list[str] = field(default_factory=list)  # Assistant 1 = A
    keys_ba: list[str] = field(default_factory=list)  # Assistant 1 = B
    dropped: dict[str, int] = field(default_factory=dict)


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def plan_requests(
    pairs: Sequence[PlannedPair], template: Template, settings: JudgeSettings
) -> dict[str, PlannedRequest]:
    """Fill each pair's keys for both orders; return the distinct requests by key."""
    requests: dict[str, PlannedRequest] = {}
    for pair in pairs:
        pair.keys_ab, pair.keys_ba = [], []
        for item in pair.items:
            for order, r1, r2, keys in (
                ("AB", item.prediction_a, item.prediction_b, pair.keys_ab),
                ("BA", item.prediction_b, item.prediction_a, pair.keys_ba),
            ):
                prompt = template.render(item.reference, r1, r2)
                body = settings.body(prompt)
                key = request_key(settings.base_url, body, {"template_sha256": template.sha256})
                keys.append(key)
                if key not in requests:
                    requests[key] = PlannedRequest(
                        key,
                        body,
                        f"{pair.model_a} vs {pair.model_b}, item {item.item_id}, order {order}",
                        {
                            "prompt_sha256": prompt_sha256(prompt),
                            "template_sha256": template.sha256,
                        },
                    )
    return requests


async def run_requests(
    todo: Sequence[PlannedRequest],
    client: OpenAICompatClient,
    cache: RequestCache,
    concurrency: int,
    invocation: str,
    progress: bool = True,
) -> BatchOutcome:
    """Ask the judge for every request in `todo`, never more than `concurrency` at once."""
    bar = tqdm(total=len(todo), desc="judging", unit="call", disable=not progress)
    try:
        return await fetch_all(
            todo,
            client,
            cache,
            invocation=invocation,
            concurrency=concurrency,
            on_done=lambda _key: bar.update(1),
        )
    finally:
        bar.close()
