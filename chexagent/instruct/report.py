"""A Table 6-style statistics report: instances and unique images per pair and split, plus
what the mixer drew and what the leakage guard removed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chexagent.instruct.mixing import MixReport
from chexagent.instruct.schema import Instance
from harness.io import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


def statistics(instances: Iterable[Instance]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(
            [f"instances_{s}" for s in SPLITS] + [f"images_{s}" for s in SPLITS], 0
        )
    )
    images: dict[tuple[str, str], set[str]] = defaultdict(set)
    for inst in instances:
        counts[inst.pair][f"instances_{inst.split}"] += 1
        images[(inst.pair, inst.split)].update(inst.images)
    for (pair, split), seen in images.items():
        counts[pair][f"images_{split}"] = len(seen)
    return dict(sorted(counts.items()))


def render_markdown(
    stats: dict[str, dict[str, int]], mix: MixReport | None, removed: list[dict]
) -> str:
    head = [
        "Task-Dataset Pair",
        *(f"Instances({s})" for s in SPLITS),
        *(f"Images({s})" for s in SPLITS),
        "Ratio",
        "Drawn",
    ]
    lines = [
        "# CheXinstruct statistics (Table 6 layout)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for pair, row in stats.items():
        ratio = mix.ratios.get(pair) if mix else None
        drawn = mix.drawn.get(pair, 0) if mix else None
        cells = [
            pair,
            *(f"{row[f'instances_{s}']:,}" for s in SPLITS),
            *(f"{row[f'images_{s}']:,}" for s in SPLITS),
            "" if ratio is None else f"{ratio:.2f}",
            "" if drawn is None else f"{drawn:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Leakage guard: {len(removed)} instance(s) removed because their image is in "
        "a CheXbench item.",
    ]
    if mix and mix.held_out:
        lines.append(f"Held out of stage 3 (ratio 0): {', '.join(mix.held_out)}.")
    return "\n".join(lines) + "\n"


def write_report(
    folder: Path,
    stats: dict[str, Any],
    mix: MixReport | None,
    removed: list[dict],
    extra: dict[str, Any],
) -> None:
    payload = {"statistics": stats, "leakage_removed": removed, **extra}
    if mix:
        payload["mix"] = {
            "seed": mix.seed,
            "ratios": mix.ratios,
            "available": mix.available,
            "drawn": mix.drawn,
            "held_out": mix.held_out,
            "empirical_ratios": mix.empirical_ratios(),
        }
    atomic_write_json(folder / "report.json", payload)
    atomic_write_text(folder / "report.md", render_markdown(stats, mix, removed))
