"""The three multiple-choice decision rules, in one place.

lm-eval's `acc` (summed log-prob) and `acc_norm` (summed log-prob per option character) are
kept for comparability with other lm-eval results; `acc_chexbench` is the official CheXbench
rule (mean log-prob per option token) and the headline number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.taxonomy import PERCEPTION_HEADLINE

RULES = ("acc_chexbench", "acc", "acc_norm")
HEADLINE = PERCEPTION_HEADLINE


class OptionScore(tuple):
    """lm-eval's (log-prob, is_greedy) pair, carrying what CheXbench scoring also needs.

    `n_tokens` gives the official mean-token rule; `unparseable` marks a generation-mode answer
    that named no option (counted wrong, never replaced by a random guess).
    """

    n_tokens: int
    unparseable: bool
    generated: str | None

    def __new__(
        cls,
        logprob: float,
        is_greedy: bool,
        n_tokens: int,
        unparseable: bool = False,
        generated: str | None = None,
    ) -> OptionScore:
        obj = super().__new__(cls, (float(logprob), bool(is_greedy)))
        obj.n_tokens = int(n_tokens)
        obj.unparseable = bool(unparseable)
        obj.generated = generated
        return obj

    def __getnewargs__(self) -> tuple:
        return (self[0], self[1], self.n_tokens, self.unparseable, self.generated)

    def to_json(self) -> dict[str, Any]:
        return {
            "ll": self[0],
            "greedy": self[1],
            "n": self.n_tokens,
            "unparseable": self.unparseable,
            "generated": self.generated,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OptionScore:
        return cls(d["ll"], d["greedy"], d["n"], d.get("unparseable", False), d.get("generated"))


class MissingTokenCount(UserError):
    """A model returned plain (log-prob, is_greedy) pairs for a CheXbench task."""


def predictions(scores: Sequence[Any], choices: Sequence[str]) -> dict[str, int]:
    """Predicted option index under each rule; -1 when a generation-mode answer did not parse.

    `scores` are the engine's `OptionScore`s: (log-prob, is_greedy) with `.n_tokens`.
    Ties go to the first option (numpy argmax), deterministically.
    """
    if any(getattr(s, "unparseable", False) for s in scores):
        return {rule: -1 for rule in RULES}
    if any(getattr(s, "n_tokens", None) is None for s in scores):
        # Never guess 1: that silently turns the mean-token rule into lm-eval's summed `acc`.
        raise MissingTokenCount(
            "option scores carry no token count, so acc_chexbench (the official mean log-prob "
            "per option token) cannot be computed; score CheXbench tasks with a CheXbench "
            "adapter (chexbench adapters), whose engine returns the count"
        )
    lls = np.array([float(s[0]) for s in scores])
    n_tokens = np.array([max(int(s.n_tokens), 1) for s in scores], dtype=float)
    n_chars = np.array([max(len(c), 1) for c in choices], dtype=float)
    return {
        "acc_chexbench": int(np.argmax(lls / n_tokens)),
        "acc": int(np.argmax(lls)),
        "acc_norm": int(np.argmax(lls / n_chars)),
    }


def correctness(scores: Sequence[Any], choices: Sequence[str], gold: int) -> dict[str, float]:
    return {rule: float(pred == gold) for rule, pred in predictions(scores, choices).items()}
