"""`chexbench score`: report metrics for a file of saved generations, without loading any
generation model, so a model's text can be rescored (new scorer, new metric) for free.

Predictions JSONL, one object per line:
    {"id": "findings_generation/12" | 12, "prediction": "...", "reference": "..." (optional)}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import __version__
from harness.data import TextItem, file_sha256, load_data
from harness.errors import UserError
from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_schema import ModelInfo, Results, RunCard, SubtaskResult, validate_results
from harness.run_card import git_commit, package_versions
from harness.taxonomy import TEXT_TASK_NAMES, resolve_dataset, subtask_for
from harness.text_metrics import HEADLINE, TextMetricsConfig, score_texts
from harness.text_metrics.config import ALL_FAMILIES, BERTSCORE_PRESETS


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


def register(sub) -> None:
    p = sub.add_parser("score", help="score saved findings generations/summaries",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(TEXT_TASK_NAMES))
    p.add_argument("--predictions", required=True, type=Path, help="JSONL of predictions")
    p.add_argument("--references", type=Path, default=None,
                   help="the CheXbench data.json (references, datasets and patients from it)")
    p.add_argument("--output", type=Path, default=None,
                   help="output folder (default: the predictions file's folder)")
    p.add_argument("--dataset", default="mimic_cxr",
                   help="dataset of the rows when --references is not given")
    p.add_argument("--model-name", default=None, help="display name (default: file stem)")
    p.add_argument("--metrics", default=",".join(ALL_FAMILIES),
                   help=f"comma list of {', '.join(ALL_FAMILIES)}")
    p.add_argument("--bertscore-preset", choices=sorted(BERTSCORE_PRESETS), default="radeval")
    p.add_argument("--cache-dir", default=None, help="scorer cache (see `chexbench scorers`)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates B")
    p.add_argument("--seed", type=int, default=1234)
    p.set_defaults(func=run)


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


def read_rows(path: Path, task: str, items: dict[int, TextItem] | None,
              dataset: str) -> list[Row]:
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
                raise UserError(f"{where}: duplicate id {task}/{index} (first on line {seen[index]})")
            seen[index] = lineno
            item = None
            if items is not None:
                item = items.get(index)
                if item is None:
                    raise UserError(f"{where}: unknown id {task}/{index} (not in the {task} "
                                    f"items of the references file)")
            if reference is None and item is not None:
                reference = item.reference or ""  # empty: dropped and counted, not an error
            if reference is None:
                raise UserError(f"{where}: no reference for {task}/{index} (add 'reference' "
                                "or pass --references data.json)")
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg})")
            continue
        except UserError as exc:
            problems.append(str(exc))
            continue
        rows.append(Row(lineno, index, f"{task}/{index}", prediction, reference,
                        item.dataset if item else dataset,
                        item.cluster_id if item else f"{task}/{index}",
                        list(item.image_paths) if item else []))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        raise UserError(f"{len(problems)} problem(s) in {path}; nothing was written:\n  {shown}{more}")
    if not rows:
        raise UserError(f"{path}: no predictions")
    return rows


def run(args: argparse.Namespace) -> int:
    started = time.time()
    task = args.task
    families = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(families) - set(ALL_FAMILIES))
    if unknown:
        raise UserError(f"--metrics: unknown {unknown}; known: {list(ALL_FAMILIES)}")
    dataset = resolve_dataset(args.dataset)
    if dataset is None:
        raise UserError(f"--dataset: unknown dataset {args.dataset!r}")
    items = None
    if args.references is not None:
        data = load_data(args.references)
        items = {i.index: i for i in data.text if i.task == task}
    rows = read_rows(args.predictions, task, items, dataset.slug)
    cfg = TextMetricsConfig.with_bertscore_preset(
        args.bertscore_preset, metrics=families, cache_dir=args.cache_dir, device=args.device)

    subtasks: dict[str, SubtaskResult] = {}
    samples: list[dict] = []
    for ds in sorted({r.dataset for r in rows}):
        part = [r for r in rows if r.dataset == ds]
        sub = subtask_for(task, ds)
        name = sub.name if sub else f"{TEXT_TASK_NAMES[task]}_{ds}"
        out = score_texts([r.prediction for r in part], [r.reference or "" for r in part], cfg,
                          clusters=[r.cluster_id for r in part], bootstrap_B=args.bootstrap,
                          seed=args.seed)
        subtasks[name] = SubtaskResult(
            name=name, task=task, dataset=ds, kind="text",
            n=len(part) - sum(out.excluded.values()), excluded=sum(out.excluded.values()),
            excluded_reasons={k: v for k, v in out.excluded.items() if v}, headline=HEADLINE,
            metrics=out.metrics)
        for r, scores in zip(part, out.per_sample, strict=True):
            row = {"task": name, "item_id": r.item_id, "doc_id": r.index, "dataset": ds,
                   "cluster_id": r.cluster_id, "image_paths": r.image_paths, "prompt": None,
                   "prediction": r.prediction, "reference": r.reference, "line": r.line,
                   "metrics": {k: v for k, v in scores.items() if v is not None}}
            if not (r.reference or "").strip() or all(v is None for v in scores.values()):
                row["excluded"] = "empty_reference"
            samples.append(row)

    pred_sha = file_sha256(args.predictions)
    run_id = "score-" + hashlib.sha256(json.dumps(
        [task, pred_sha, file_sha256(args.references) if args.references else None,
         cfg.model_dump(mode="json", exclude={"cache_dir", "device"}), args.bootstrap,
         args.seed]).encode()).hexdigest()[:16]
    out_dir = args.output or args.predictions.parent
    results = Results(
        run_id=run_id, kind="run", source="reproduced",
        model=ModelInfo(name=args.model_name or args.predictions.stem,
                        model_args={"predictions_file": args.predictions.name,
                                    "predictions_sha256": pred_sha}),
        run_card=RunCard(
            harness_version=__version__, harness_commit=git_commit(), packages=package_versions(),
            command=["chexbench", *sys.argv[1:]] if sys.argv[0].endswith("chexbench") else None,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_time_s=round(time.time() - started, 3), device=args.device, seed=args.seed,
            bootstrap={"B": args.bootstrap, "seed": args.seed, "unit": "cluster"},
            data_file=str(args.references) if args.references else None,
            data_sha256=file_sha256(args.references) if args.references else None,
            extra={"text_metrics": cfg.model_dump(mode="json", exclude={"cache_dir"}),
                   "scored_from": "saved predictions"}),
        subtasks=subtasks, samples_file=f"{run_id}.samples.jsonl")
    payload = results.model_dump(mode="json")
    errors = validate_results(payload)
    if errors:
        raise UserError("internal: results failed schema validation: " + "; ".join(errors[:5]))
    atomic_write_jsonl(out_dir / f"{run_id}.samples.jsonl", samples)
    atomic_write_json(out_dir / f"{run_id}.json", payload)
    for name, sub in subtasks.items():
        head = sub.metrics.get(HEADLINE)
        shown = f"{head.value:.4f}" if head and head.value is not None else "unavailable"
        print(f"{name}: n={sub.n} excluded={sub.excluded} {HEADLINE}={shown}")
        for mname, mv in sub.metrics.items():
            if mv.value is None:
                print(f"  {mname}: unavailable ({mv.unavailable})")
    print(f"wrote {out_dir / (run_id + '.json')}")
    return 0
