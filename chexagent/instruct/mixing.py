"""The stage-3 mixture: Table 7 ratios applied to each pair's train instances.

Deterministic for a seed: a pair with ratio r and n instances contributes floor(r) full copies
plus round(frac(r) * n) instances drawn without replacement, and the mixture is shuffled.
Held-out datasets and ratio-0 pairs contribute nothing; what was dropped is reported.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from chexagent.instruct.ratios import ratio_for
from chexagent.instruct.schema import Instance


@dataclass
class MixReport:
    seed: int
    ratios: dict[str, float] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    drawn: dict[str, int] = field(default_factory=dict)
    held_out: list[str] = field(default_factory=list)  # pairs with ratio 0

    def empirical_ratios(self) -> dict[str, float]:
        return {p: self.drawn.get(p, 0) / n for p, n in self.available.items() if n}


def mix(
    instances: Iterable[Instance], seed: int, overrides: dict[str, float] | None = None
) -> tuple[list[Instance], MixReport]:
    by_pair: dict[str, list[Instance]] = defaultdict(list)
    datasets: dict[str, str] = {}
    for inst in instances:
        if inst.split == "train":
            by_pair[inst.pair].append(inst)
            datasets[inst.pair] = inst.dataset
    report = MixReport(seed=seed)
    rng = random.Random(seed)
    out: list[Instance] = []
    for pair in sorted(by_pair):
        pool = sorted(by_pair[pair], key=lambda i: i.instance_id)
        ratio = ratio_for(pair, datasets[pair], overrides)
        report.ratios[pair] = ratio
        report.available[pair] = len(pool)
        if ratio <= 0:
            report.held_out.append(pair)
            continue
        whole = math.floor(ratio)
        drawn = pool * whole + rng.sample(pool, round((ratio - whole) * len(pool)))
        report.drawn[pair] = len(drawn)
        out.extend(drawn)
    rng.shuffle(out)
    return out, report
