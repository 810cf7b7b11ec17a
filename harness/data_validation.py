"""Checking a data.json before any model loads: item counts against Table 9, and every image.

A missing or unreadable image found after hours of scoring wastes the run, so `chexbench data
validate` reports all of them up front.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from harness.data import CheXbenchData, PerceptionItem, TextItem
from harness.images import ImageResolver, check_image
from harness.taxonomy import SUBTASKS, subtask_for


@dataclass
class SubtaskCheck:
    task: str
    dataset: str
    n: int = 0
    paper_n: int | None = None
    paper_options: str | None = None
    option_counts: Counter = field(default_factory=Counter)
    images: int = 0
    missing: int = 0
    unreadable: int = 0


@dataclass
class ImageProblem:
    task: str
    index: int
    raw_path: str
    resolved: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.task} item {self.index}: {self.raw_path} -> {self.resolved} ({self.reason})"


@dataclass
class ValidationReport:
    rows: list[SubtaskCheck]
    problems: list[ImageProblem]
    absent_subtasks: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(
    data: CheXbenchData, resolver: ImageResolver, progress: bool = False
) -> ValidationReport:
    """Count items per subtask and check every referenced image once."""
    rows: dict[tuple[str, str], SubtaskCheck] = {}
    checked: dict[Path, str | None] = {}
    problems: list[ImageProblem] = []
    items: list[PerceptionItem | TextItem] = [*data.perception, *data.text]
    for item in tqdm(items, desc="checking images", unit="item", disable=not progress):
        key = (item.task, item.dataset)
        if key not in rows:
            sub = subtask_for(item.task, item.dataset)
            rows[key] = SubtaskCheck(
                item.task,
                item.dataset,
                paper_n=sub.paper_n if sub else None,
                paper_options=sub.paper_options if sub else None,
            )
        row = rows[key]
        row.n += 1
        if isinstance(item, PerceptionItem):
            row.option_counts[len(item.options)] += 1
        for raw in item.image_paths:
            resolved = resolver.resolve(raw, item.dataset)
            if resolved not in checked:
                checked[resolved] = check_image(resolved)
            reason = checked[resolved]
            row.images += 1
            if reason is None:
                continue
            if reason == "missing":
                row.missing += 1
            else:
                row.unreadable += 1
            problems.append(ImageProblem(item.task, item.index, raw, resolved, reason))
    present = {(r.task, r.dataset) for r in rows.values()}
    absent = [
        s.name
        for s in SUBTASKS
        if s.paper_n is not None and (s.task.slug, s.dataset.slug) not in present
    ]
    order = {(s.task.slug, s.dataset.slug): i for i, s in enumerate(SUBTASKS)}
    ordered = sorted(rows.values(), key=lambda r: order.get((r.task, r.dataset), len(order)))
    return ValidationReport(ordered, problems, absent)
