"""The paper's balanced bootstrap (section 7): equal prevalence, equal subgroup sizes.

Subgroups differ in size and in how common the disease is, and F1 moves with prevalence; so
a raw per-group F1 mixes model bias with case mix. Each bootstrap sample therefore draws the
same number of positives and negatives from every subgroup (with replacement), and F1 is
computed per subgroup on that balanced sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_stratum_size(sizes: Sequence[int], rule: str | int) -> int:
    """How many items each (subgroup, label) stratum contributes per bootstrap sample.

    "min" (default) never draws a stratum bigger than the smallest one, so no subgroup looks
    more certain than its data allow (larger groups look a little less certain: conservative).
    "max" upsamples small strata as the paper's wording suggests, which understates their
    uncertainty; an integer fixes the size.
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"every stratum needs at least one item, got sizes {sizes}")
    if isinstance(rule, int) or (isinstance(rule, str) and rule.isdigit()):
        size = int(rule)
        if size <= 0:
            raise ValueError(f"per-stratum size must be positive, got {size}")
        return size
    rules = {"min": min(sizes), "max": max(sizes), "median": int(np.median(sizes))}
    if rule not in rules:
        raise ValueError(f"per-stratum rule must be min, median, max or an integer, got {rule!r}")
    return max(1, rules[rule])


def balanced_indices(
    strata: Sequence[np.ndarray], size: int, B: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, n_strata, size) item indices: `size` draws with replacement from every stratum."""
    out = np.empty((B, len(strata), size), dtype=np.int64)
    for s, members in enumerate(strata):
        members = np.asarray(members, dtype=np.int64)
        out[:, s, :] = members[rng.integers(0, len(members), size=(B, size))]
    return out


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 of the positive class; 0 when there are no positives at all (nothing to find)."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def balanced_group_f1(
    pred: np.ndarray,
    positives: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
    size: int,
    B: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(B, n_groups) F1 per subgroup over B balanced bootstrap samples.

    `positives[g]` / `negatives[g]` are the item indices of group g with label 1 / 0; every
    sample draws `size` of each, so prevalence is 50% and all groups weigh the same.
    """
    pred = np.asarray(pred, dtype=bool)
    strata = [s for pair in zip(positives, negatives, strict=True) for s in pair]
    idx = balanced_indices(strata, size, B, rng)
    predicted_pos = pred[idx].sum(axis=2)  # (B, 2 * n_groups)
    tp = predicted_pos[:, 0::2]
    fp = predicted_pos[:, 1::2]
    fn = size - tp
    return f1_from_counts(tp, fp, fn)
