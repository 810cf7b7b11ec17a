"""Token counts and prices: what a run will cost (dry run) and what it did cost (ledger).

Estimates use tiktoken when it is installed and has its encoding locally; otherwise the
documented rule of thumb of 4 characters per token (OpenAI's own guidance for English).
Real costs never use estimates: they come from the `usage` the server reported per call, as
booked in the cache's ledger (`cache.PaidCall`), validated before booking (`usage`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from harness.errors import UserError
from harness.openai_compat.cache import PaidCall

# List prices in USD per 1M tokens (input, output) for the models the paper era used; any
# other model needs --price-in/--price-out, or its cost is reported as unknown.
KNOWN_PRICES_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-0613": (30.0, 60.0),
    "gpt-4-0314": (30.0, 60.0),
    "gpt-4-32k": (60.0, 120.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-1106-preview": (10.0, 30.0),
}


@dataclass(frozen=True)
class Prices:
    input_per_1m: float
    output_per_1m: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


def resolve_prices(model: str, price_in: float | None, price_out: float | None) -> Prices | None:
    if price_in is not None or price_out is not None:
        if price_in is None or price_out is None:
            raise UserError("give both --price-in and --price-out (USD per 1M tokens)")
        if not (0 <= price_in < math.inf and 0 <= price_out < math.inf):
            raise UserError(
                "--price-in and --price-out must be non-negative numbers (USD per 1M tokens)"
            )
        return Prices(price_in, price_out)
    known = KNOWN_PRICES_PER_1M.get(model)
    return Prices(*known) if known else None


def token_counter(model: str) -> tuple[str, Callable[[str], int]]:
    """(method name, count function) for prompt-size estimates."""
    try:
        import tiktoken  # optional

        try:
            enc = tiktoken.encoding_for_model(model)
        except KeyError:
            enc = tiktoken.get_encoding("cl100k_base")
        enc.encode("probe")  # fails here when the encoding file cannot be fetched offline
        return f"tiktoken:{enc.name}", lambda text: len(enc.encode(text))
    except Exception:  # not installed, or its BPE file is not available offline
        return "chars/4", lambda text: math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Estimate:
    calls: int
    cached: int
    prompt_tokens: int
    completion_tokens: int
    method: str
    cost_usd: float | None


def estimate(
    prompts: Iterable[str],
    cached: int,
    model: str,
    completion_tokens_per_call: int,
    prices: Prices | None,
) -> Estimate:
    method, count = token_counter(model)
    # Chat formatting adds tokens around the one user message: 3 per message, 1 for the role
    # and 3 priming the reply (the OpenAI cookbook's count).
    sizes = [count(p) + 7 for p in prompts]
    p_tok = sum(sizes)
    c_tok = completion_tokens_per_call * len(sizes)
    return Estimate(
        len(sizes), cached, p_tok, c_tok, method, prices.cost(p_tok, c_tok) if prices else None
    )


def ledger_totals(
    calls: Iterable[PaidCall], prices: Prices | None
) -> dict[str, float | int | None]:
    """Calls, tokens and cost of ledger rows. Calls whose usage was invalid (no tokens booked)
    or absent (booked as 0) are counted apart: with any of them the cost is a lower bound."""
    rows = list(calls)
    p_tok = sum(c.prompt_tokens or 0 for c in rows)
    c_tok = sum(c.completion_tokens or 0 for c in rows)
    return {
        "calls": len(rows),
        "prompt_tokens": p_tok,
        "completion_tokens": c_tok,
        "cost_usd": round(prices.cost(p_tok, c_tok), 6) if prices else None,
        "calls_without_usage": sum(
            1 for c in rows if c.prompt_tokens is None or not c.usage_reported
        ),
    }
