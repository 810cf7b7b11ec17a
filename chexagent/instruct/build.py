"""`chexagent data build`: processors -> leakage guard -> store of all instances -> Table 7 mix
-> store of the stage-3 training stream, plus the statistics report.

Output folder layout:
    instances/       every instance of every split (held-out datasets included, for eval)
    stage3-train/    the shuffled Table 7 mixture of train instances
    report.md/.json  Table 6-style statistics, the mix, the leakage removals
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chexagent.instruct.leakage import LeakageGuard
from chexagent.instruct.mixing import mix
from chexagent.instruct.processors import PROCESSORS
from chexagent.instruct.report import statistics, write_report
from chexagent.instruct.schema import Instance
from chexagent.instruct.store import write_store


def parse_sources(specs: Iterable[str]) -> dict[str, Path]:
    sources = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name = name.strip().lower()
        if not sep or name not in PROCESSORS:
            raise ValueError(
                f"--source {spec!r}: expected NAME=DIR with NAME one of {sorted(PROCESSORS)}"
            )
        sources[name] = Path(folder).expanduser()
    return sources


def parse_ratios(specs: Iterable[str]) -> dict[str, float]:
    out = {}
    for spec in specs:
        pair, sep, value = spec.rpartition("=")
        if not sep:
            raise ValueError(f"--ratio {spec!r}: expected '(Task)Dataset=R'")
        out[pair.strip()] = float(value)
    return out


def build(
    out: Path,
    sources: dict[str, Path],
    seed: int = 0,
    benchmarks: Iterable[str | Path] = (),
    ratio_overrides: dict[str, float] | None = None,
    image_root: str | None = None,
    image_map: str | None = None,
    shard_size: int = 50_000,
) -> dict[str, Any]:
    from harness.images import ImageResolver

    resolver = ImageResolver.from_args(image_root, image_map) if (image_root or image_map) else None
    guard = LeakageGuard.from_benchmarks(benchmarks, resolver)
    instances: list[Instance] = []
    for name, folder in sources.items():
        produced = PROCESSORS[name](folder, seed)
        instances.extend(tqdm(produced, desc=f"processing {name}", unit="inst", leave=False))
    kept = guard.filter(instances)
    mixture, mix_report = mix(kept, seed, ratio_overrides)
    meta = {
        "seed": seed,
        "sources": {k: str(v) for k, v in sources.items()},
        "benchmarks": guard.sources,
        "ratio_overrides": ratio_overrides or {},
    }
    write_store(out / "instances", kept, shard_size, extra=meta)
    write_store(out / "stage3-train", mixture, shard_size, extra=meta)
    write_report(out, statistics(kept), mix_report, guard.removed, meta)
    return {
        "instances": len(kept),
        "stage3_train": len(mixture),
        "leakage_removed": len(guard.removed),
    }
