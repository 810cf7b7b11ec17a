"""Rescoring saved generations (`chexbench score`): the report metrics for a predictions
file, without loading any generation model, so a model's text can be rescored (new scorer, new
metric) for free. The metrics go through `harness.text_results.text_subtask`, the same code a
`chexbench run` ends in, so a rescored file and a fresh run give the same numbers.

Predictions JSONL, one object per line:
    {"id": "findings_generation/12" | 12, "prediction": "...", "reference": "..." (optional)}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import TextItem, file_sha256, load_data
from harness.errors import UserError
from harness.results_io import results_id
from harness.results_schema import ModelInfo, Results, SubtaskResult
from harness.run_card import make_run_card
from harness.taxonomy import TEXT_TASK_NAMES, resolve_dataset, subtask_for
from harness.text_results import text_subtask


@dataclass
class Row:
    line: int
    index: int
    item_id: str
    prediction: str
    reference: str | None
    dataset: str
    cluster_id: str
    image_paths: list[str]


def parse_id(raw: object, task: str, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        prefix, _, tail = raw.rpartition("/")
        if prefix and prefix != task:
            raise UserError(f"{where}: id {raw!r} belongs to task {prefix!r}, not {task!r}")
        if tail.isdigit():
            return int(tail)
    raise UserError(f"{where}: id must be '{task}/<index>' or an integer index, got {raw!r}")


def read_rows(path: Path, task: str, items: dict[int, TextItem] | None, dataset: str) -> list[Row]:
    """Validate the whole file first: every problem is reported, with its line, before
    anything is scored or written."""
    if not path.is_file():
        raise UserError(f"{path}: predictions file not found")
    problems: list[str] = []
    rows: list[Row] = []
    seen: dict[int, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise UserError(f"{where}: expected a JSON object")
            index = parse_id(obj.get("id"), task, where)
            prediction = obj.get("prediction")
            if not isinstance(prediction, str):
                raise UserError(f"{where}: 'prediction' must be a string")
            reference = obj.get("reference")
            if reference is not None and not isinstance(reference, str):
                raise UserError(f"{where}: 'reference' must be a string")
            if index in seen:
                raise UserError(
                    f"{where}: duplicate id {task}/{index} (first on line {seen[index]})"
                )
            seen[index] = lineno
            item = None
            if items is not None:
                item = items.get(index)
                if item is None:
                    raise UserError(
                        f"{where}: unknown id {task}/{index} (not in the {task} "
                        f"items of the references file)"
                    )
            if reference is None and item is not None:
                reference = item.reference or ""  # empty: dropped and counted, not an error
            if reference is None:
                raise UserError(
                    f"{where}: no reference for {task}/{index} (add 'reference' "
                    "or pass --references data.json)"
                )
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg})")
            continue
        except UserError as exc:
            problems.append(str(exc))
            continue
        rows.append(
            Row(
                lineno,
                index,
                f"{task}/{index}",
                prediction,
                reference,
                item.dataset if item else dataset,
                item.cluster_id if item else f"{task}/{index}",
                list(item.image_paths) if item else [],
            )
        )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise UserError(
            f"{len(problems)} problem(s) in {path}; nothing was written:\n  {shown}{more}"
        )
    if not rows:
        raise UserError(f"{path}: no predictions")
    return rows


def score_saved_predictions(
    task: str,
    predictions: Path,
    references: Path | None,
    dataset: str,
    cfg: Any,
    bootstrap_samples: int,
    seed: int,
    model_name: str | None = None,
    command: list[str] | None = None,
) -> tuple[Results, list[dict[str, Any]]]:
    """Results (one subtask per dataset) and sample rows for a predictions file."""
    started = time.time()
    ds = resolve_dataset(dataset)
    if ds is None:
        raise UserError(f"--dataset: unknown dataset {dataset!r}")
    items = None
    if references is not None:
        data = load_data(references)
        items = {i.index: i for i in data.text if i.task == task}
    rows = read_rows(predictions, task, items, ds.slug)
    lm_task = TEXT_TASK_NAMES[task]
    subtasks: dict[str, SubtaskResult] = {}
    samples: list[dict[str, Any]] = []
    for slug in sorted({r.dataset for r in rows}):
        sub = subtask_for(task, slug)
        name = sub.name if sub else f"{lm_task}_{slug}"
        part = [
            {
                "task": name,
                "item_id": r.item_id,
                "doc_id": r.index,
                "dataset": slug,
                "cluster_id": r.cluster_id,
                "image_paths": r.image_paths,
                "prompt": None,
                "prediction": r.prediction,
                "reference": r.reference,
                "line": r.line,
                "metrics": {},
            }
            for r in rows
            if r.dataset == slug
        ]
        subtasks[name] = text_subtask(
            lm_task, part, {}, bootstrap_samples, seed, "all", cfg, name=name
        )
        samples.extend(part)
    pred_sha = file_sha256(predictions)
    ref_sha = file_sha256(references) if references else None
    settings = cfg.model_dump(mode="json", exclude={"cache_dir", "device"})
    run_id = results_id("score", [task, pred_sha, ref_sha, settings, bootstrap_samples, seed])
    card = make_run_card(
        seed=seed,
        device=cfg.device,
        dtype=None,
        data_file=str(references) if references else None,
        data_sha256=ref_sha,
        tasks=[lm_task],
        wall_time_s=round(time.time() - started, 3),
        command=command,
        synthetic=False,
        bootstrap={"B": bootstrap_samples, "seed": seed, "unit": "cluster"},
        text_metrics=cfg.model_dump(mode="json", exclude={"cache_dir"}),
        scored_from="saved predictions",
    )
    results = Results(
        run_id=run_id,
        kind="run",
        source="reproduced",
        model=ModelInfo(
            name=model_name or predictions.stem,
            model_args={"predictions_file": predictions.name, "predictions_sha256": pred_sha},
        ),
        run_card=card,
        subtasks=subtasks,
        samples_file=f"{run_id}.samples.jsonl",
    )
    return results, samples
