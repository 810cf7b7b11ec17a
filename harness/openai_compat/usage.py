"""The token counts a server reports for a call, checked before they are booked.

`usage` is the only source of real cost, and it comes from the server: a broken or hostile one
can send `1e400` (JSON for infinity), negative counts, fractions, strings or booleans. Each
count must be a whole number from 0 to MAX_TOKENS_PER_CALL; anything else is `InvalidUsage`,
never coerced (int(True) is 1, int("12") is 12, int(12.5) is 12, int(inf) crashes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Far above any context window (the largest are ~10M tokens): a count beyond this is a
# broken server, not a real call.
MAX_TOKENS_PER_CALL = 10_000_000
FIELDS = ("prompt_tokens", "completion_tokens")


class InvalidUsage(ValueError):
    """The server's `usage` cannot be booked; the message says which field and value."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reported: bool = True  # False: the answer had no `usage` at all (booked as 0 tokens)


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    if type(value) is not int or not 0 <= value <= MAX_TOKENS_PER_CALL:
        raise InvalidUsage(
            f"usage.{name} is {value!r}: expected a whole number from 0 to {MAX_TOKENS_PER_CALL:,}"
        )
    return value


def read_usage(body: Mapping[str, Any]) -> Usage:
    """The validated `usage` of a response body. An answer without `usage` is booked as 0
    tokens with `reported=False`, so totals can say that they are a lower bound."""
    usage = body.get("usage")
    if usage is None:
        return Usage(0, 0, reported=False)
    if not isinstance(usage, Mapping):
        raise InvalidUsage(f"usage is {usage!r}: expected an object")
    return Usage(*(_count(usage, name) for name in FIELDS))
