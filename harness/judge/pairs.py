"""Reading the per-sample JSONL of runs into the items a judge compares.

A judgment is only meaningful when both sides answered the same item against the same
reference, so ids are joined strictly and every disagreement is reported with file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.taxonomy import TEXT_TASK_NAMES

REFERENCE_NAME = "reference"


@dataclass(frozen=True)
class SampleRow:
    item_id: str
    prediction: str
    reference: str
    cluster_id: str | None
    where: str  # "file:line", for messages


@dataclass
class RunSamples:
    name: str  # the model's display name
    path: Path
    rows: dict[str, SampleRow]
    excluded: dict[str, int]  # reason -> count


@dataclass(frozen=True)
class PairItem:
    item_id: str
    reference: str
    prediction_a: str
    prediction_b: str
    cluster_id: str | None


def _row_task_matches(task_field: Any, task_slug: str) -> bool:
    full = TEXT_TASK_NAMES[task_slug]
    return task_field is None or task_field == full or str(task_field).startswith(full + "_")


def run_display_name(path: Path) -> str:
    """The model name from the results JSON beside `<run>.samples.jsonl`, else the file stem."""
    stem = path.name.removesuffix(".jsonl").removesuffix(".samples")
    beside = path.with_name(stem + ".json")
    if beside.is_file():
        try:
            name = json.loads(beside.read_text(encoding="utf-8")).get("model", {}).get("name")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
    return stem


def load_run_samples(path: str | Path, task_slug: str, name: str | None = None) -> RunSamples:
    """Text rows of one task; malformed rows and duplicate ids fail with file:line."""
    path = Path(path)
    if task_slug not in TEXT_TASK_NAMES:
        raise UserError(
            f"--task {task_slug!r} is not a text task; choose one of {sorted(TEXT_TASK_NAMES)}"
        )
    if not path.is_file():
        raise UserError(f"samples file {path} not found")
    rows: dict[str, SampleRow] = {}
    excluded: dict[str, int] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: invalid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise UserError(f"{where}: a sample row must be a JSON object")
        if not _row_task_matches(row.get("task"), task_slug):
            continue
        item_id = row.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            raise UserError(f"{where}: task {task_slug}: row has no string 'item_id'")
        for field in ("prediction", "reference"):
            if not isinstance(row.get(field), str):
                raise UserError(
                    f"{where}: task {task_slug}, item {item_id}: '{field}' must be a string"
                )
        if item_id in rows:
            raise UserError(
                f"{where}: task {task_slug}: duplicate item {item_id} "
                f"(first at {rows[item_id].where})"
            )
        if not row["reference"].strip():
            excluded["empty_reference"] = excluded.get("empty_reference", 0) + 1
            continue
        cluster = row.get("cluster_id")
        rows[item_id] = SampleRow(
            item_id,
            row["prediction"],
            row["reference"],
            str(cluster) if cluster is not None else None,
            where,
        )
    if not rows:
        raise UserError(f"{path}: no text rows for task {task_slug} (is --task right?)")
    return RunSamples(name or run_display_name(path), path, rows, excluded)


def join_runs(a: RunSamples, b: RunSamples) -> tuple[list[PairItem], dict[str, int]]:
    """Items both runs answered, in A's order; items in only one run are counted, and a
    reference that differs between the runs is an error (they would not be comparable)."""
    items: list[PairItem] = []
    for item_id, ra in a.rows.items():
        rb = b.rows.get(item_id)
        if rb is None:
            continue
        if ra.reference.strip() != rb.reference.strip():
            raise UserError(
                f"item {item_id}: the references differ between {ra.where} and {rb.where}; "
                "the runs were scored on different data"
            )
        items.append(
            PairItem(
                item_id, ra.reference, ra.prediction, rb.prediction, ra.cluster_id or rb.cluster_id
            )
        )
    only = {
        f"only_in_{a.name}": sum(1 for i in a.rows if i not in b.rows),
        f"only_in_{b.name}": sum(1 for i in b.rows if i not in a.rows),
    }
    if not items:
        raise UserError(f"{a.path} and {b.path} share no item_id: nothing to judge")
    return items, {k: v for k, v in only.items() if v}


def against_reference(a: RunSamples) -> list[PairItem]:
    """A run versus the human-written references themselves (side B is the reference)."""
    return [
        PairItem(r.item_id, r.reference, r.prediction, r.reference, r.cluster_id)
        for r in a.rows.values()
    ]
