"""`chexbench run`: one benchmark run from its configuration to a results file, resumable.

A run is a `RunConfig` (everything that changes its numbers; frozen, hashed as a whole, with
the data file named by its content) plus `RunOptions` (how it executes: where, batch size,
processes, what to call the model). The results live in `<output>/<run_id>/`; the model's
scores are journaled as they finish under `<output>/.journal/<scoring_id>/`, keyed only by what
changes a score, so a killed run resumes where it stopped, and a re-analysis (another seed or
bootstrap count) reuses every score instead of re-running the model. The results files are
written atomically at the end.

One run writes a scoring folder at a time: it holds the folder's lock (`harness.locking`) from
before the model loads to the end, so a second run on the same folder is refused instead of
scoring everything again; a run that fails leaves no folder it made empty (docs/runs.md).
Before the first forward pass every request is measured against the model's context
(`harness.prompt_lengths`). A data file that lacks some tasks runs the ones it has when the
user asked for a group (`chexbench`, a task type), and the results say which were absent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.data import DataError, file_sha256
from harness.defaults import BATCH_SIZE, BOOTSTRAP_SAMPLES, PREFETCH_BATCHES, RUNS_DIR, SEED
from harness.docs import build_docs, cached_data, subtasks_of
from harness.errors import UserError, did_you_mean
from harness.images import ImageRef
from harness.io import make_dirs, remove_empty
from harness.locking import FolderLock, probe
from harness.radiograph import set_pixel_limit
from harness.results_builder import (
    perception_groups,
    perception_row,
    perception_subtask,
    text_row,
)
from harness.results_io import results_id, write_results
from harness.results_schema import ModelInfo, Results, SubtaskResult
from harness.run_card import TASKS_DIR, make_run_card
from harness.taxonomy import (
    PERCEPTION_GROUP,
    PERCEPTION_SUBTASKS,
    SUBTASK_BY_NAME,
    TASK_TYPES,
    TEXT_TASK_NAMES,
    group_name,
)
from harness.text_results import text_subtask

log = logging.getLogger(__name__)
LOCK_FILE = "lock"

ALL_TASKS = [s.name for s in PERCEPTION_SUBTASKS] + list(TEXT_TASK_NAMES.values())
# Fields that change the model's scores; the others (seed, bootstrap, text metrics) only
# change the analysis of the same scores.
SCORING_FIELDS = (
    "model",
    "model_args",
    "tasks",
    "data",
    "mc_mode",
    "max_gen_toks",
    "limit",
    "skip_missing",
    "image_root",
    "image_map",
    "truncate_prompts",
)


@dataclass(frozen=True)
class RunConfig:
    """What a run computes. `chexbench run --config run.yaml` takes these keys (and those of
    `RunOptions`); the run card records the resolved values."""

    model: str
    data: str
    model_args: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("chexbench",)
    image_root: str | None = None
    image_map: str | None = None
    skip_missing: bool = False
    mc_mode: str = "loglikelihood"
    max_gen_toks: int | None = None  # None: each model's official limit (adapter.generation)
    limit: int | None = None
    seed: int = SEED
    bootstrap_samples: int = BOOTSTRAP_SAMPLES
    text_metrics: str = "all"  # "all" or "rouge" (the in-loop metric only)
    max_image_pixels: int | None = None  # None: harness.defaults.MAX_IMAGE_PIXELS
    # Cut an item's text from the left until it fits the model's context, rather than refuse
    # it (harness.prompt_lengths); off, the official protocol.
    truncate_prompts: bool = False

    def identity(self, data_sha256: str) -> dict[str, Any]:
        """The config as hashed: the data file by its content, not its path. A setting left
        at its default where that default predates the setting is left out, so the ids of
        earlier runs (and their journals) stay valid."""
        out = asdict(self)
        out["data"] = data_sha256
        out["tasks"] = expand_tasks(list(self.tasks))
        if not self.truncate_prompts:
            del out["truncate_prompts"]
        return out

    def run_id(self, data_sha256: str) -> str:
        return results_id(self.model, self.identity(data_sha256))

    def scoring_id(self, data_sha256: str) -> str:
        identity = self.identity(data_sha256)
        return results_id(self.model, {k: identity[k] for k in SCORING_FIELDS if k in identity})


@dataclass(frozen=True)
class RunOptions:
    """How a run executes; none of it changes a number."""

    output: str = RUNS_DIR
    batch_size: int = BATCH_SIZE
    prefetch: int = PREFETCH_BATCHES  # batches whose images decode while one runs
    show_progress: bool = True
    display_name: str | None = None
    source: str = "reproduced"
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RunSpec:
    config: RunConfig
    options: RunOptions = RunOptions()

    def to_json(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "options": asdict(self.options)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunSpec:
        config = dict(obj["config"])
        config["tasks"] = tuple(config.get("tasks", ("chexbench",)))
        options = dict(obj.get("options", {}))
        if options.get("command") is not None:
            options["command"] = tuple(options["command"])
        return cls(RunConfig(**config), RunOptions(**options))


def expand_tasks(names: list[str]) -> list[str]:
    """Task and group names -> the lm-eval task names to run, in Table 2 order."""
    wanted: set[str] = set()
    groups = {group_name(t): t for t in TASK_TYPES}
    for raw in names:
        name = raw.strip()
        if name in ("chexbench", "all"):
            wanted.update(ALL_TASKS)
        elif name == PERCEPTION_GROUP:
            wanted.update(s.name for s in PERCEPTION_SUBTASKS)
        elif name in ALL_TASKS:
            wanted.add(name)
        elif name in groups:
            wanted.update(s.name for s in PERCEPTION_SUBTASKS if s.task == groups[name])
        else:
            raise did_you_mean(
                "task",
                name,
                [*ALL_TASKS, *groups, PERCEPTION_GROUP, "chexbench"],
                "; see `chexbench tasks`",
            )
    return [t for t in ALL_TASKS if t in wanted]


@dataclass(frozen=True)
class TaskPlan:
    """The tasks a run scores, and those it was asked for that the data file does not have."""

    tasks: list[str]
    absent: list[str]
    requested: list[str]

    def coverage(self) -> dict[str, Any]:
        """What the run card records (`run_card.extra["coverage"]`, docs/runs.md)."""
        return {
            "partial": bool(self.absent),
            "absent_subtasks": self.absent,
            "requested_subtasks": self.requested,
        }


def plan_tasks(config: RunConfig) -> TaskPlan:
    """Which requested tasks the data file has items for.

    A name that stands for several tasks (`chexbench`, `chexbench_perception`, a task type)
    runs those present, since many users can get only some of the datasets (MIMIC-CXR needs
    credentialed access); a task named on its own must be present.
    """
    data = cached_data(config.data)
    requested = expand_tasks(list(config.tasks))
    named = {name.strip() for name in config.tasks}

    def present(task: str) -> bool:
        return any(data.items_for(SUBTASK_BY_NAME[s]) for s in subtasks_of(task))

    absent = [t for t in requested if not present(t)]
    for task in absent:
        if task in named:
            raise DataError(f"{config.data}: task {task} has no items in this data file")
    tasks = [t for t in requested if t not in absent]
    if not tasks:
        raise DataError(
            f"{config.data}: none of the requested tasks ({', '.join(config.tasks)})"
            " has items in this data file"
        )
    return TaskPlan(tasks, absent, requested)


def preflight(
    config: RunConfig, tasks: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, int]]]:
    """Validate data and images before loading any model; returns docs and exclusions per task
    (the docs cut to `--limit`, as lm-eval will)."""
    set_pixel_limit(config.max_image_pixels)
    cached_data(config.data)
    docs, excluded = {}, {}
    for task in tasks:
        docs[task], excluded[task] = build_docs(
            task, config.data, config.image_root, config.image_map, config.skip_missing
        )
        if config.limit:
            docs[task] = docs[task][: config.limit]
    return docs, excluded


def check_before_launch(spec: RunSpec) -> None:
    """What a launcher checks before it starts processes that would each fail the same way:
    the data, its images, and whether another run holds the scoring folder."""
    plan = plan_tasks(spec.config)
    preflight(spec.config, plan.tasks)
    scoring_id = spec.config.scoring_id(file_sha256(Path(spec.config.data)))
    folder = journal_dir(spec.options.output, scoring_id)
    probe(folder / LOCK_FILE, f"scoring folder {folder}")


@dataclass(frozen=True)
class RunOutcome:
    """Where a run's files are; `results` is None on the non-zero ranks of a data-parallel run
    (rank 0 writes the one results file)."""

    run_dir: Path
    results: Path | None


def journal_dir(output: str | Path, scoring_id: str) -> Path:
    return Path(output) / ".journal" / scoring_id


@contextlib.contextmanager
def scoring_folder(folder: Path, dp: Any) -> Iterator[None]:
    """Hold `folder`'s lock for the run (rank 0 holds it for all ranks of a data-parallel run;
    each rank still has its own journal). If the run fails, what it made and left without a
    score (an empty journal, the lock file, folders) is removed again."""
    created = make_dirs(folder)
    journal = dp.journal_path(folder)
    had_journal = journal.exists()
    lock = FolderLock(folder / LOCK_FILE, f"scoring folder {folder}")
    try:
        dp.agree(lock.acquire)
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if not had_journal and journal.stat().st_size == 0:
                journal.unlink()
        if lock.held and created:
            lock.path.unlink(missing_ok=True)
        lock.release()
        remove_empty(created)
        raise
    finally:
        lock.release()


def run_benchmark(spec: RunSpec) -> RunOutcome:
    from harness.multiprocess import DataParallel

    config, options = spec.config, spec.options
    plan = plan_tasks(config)
    tasks = plan.tasks
    docs, excluded = preflight(config, tasks)
    dp = DataParallel.from_env()  # rank 0 of 1 unless started by a launcher (--num-processes)
    dp.check_shards(config, tasks)
    if plan.absent and dp.rank == 0:
        log.warning(
            "note: %s has no items for %s; running the %d present (the results are "
            "marked partial coverage)",
            config.data,
            ", ".join(plan.absent),
            len(tasks),
        )
    data_sha = file_sha256(Path(config.data))
    run_id, scoring_id = config.run_id(data_sha), config.scoring_id(data_sha)
    run_dir = Path(options.output) / run_id
    scores_dir = journal_dir(options.output, scoring_id)
    with scoring_folder(scores_dir, dp):
        return _run(spec, plan, docs, excluded, dp, data_sha, run_dir, scores_dir)


def _run(
    spec: RunSpec,
    plan: TaskPlan,
    docs: dict[str, list[dict[str, Any]]],
    excluded: dict[str, dict[str, int]],
    dp: Any,
    data_sha: str,
    run_dir: Path,
    scores_dir: Path,
) -> RunOutcome:
    """Load the model, check every prompt fits, score, and write the results."""
    from harness.prompt_lengths import check_prompt_lengths
    from model_adapters.registry import build_lm

    config, options = spec.config, spec.options
    scoring_id = scores_dir.name
    started = time.time()
    for name in ("lm_eval", "lm-eval"):  # its per-task notices drown our progress bars
        logging.getLogger(name).setLevel(logging.ERROR)
    lm = build_lm(
        config.model,
        dp.model_args(config.model, config.model_args),
        batch_size=options.batch_size,
        mc_mode=config.mc_mode,
        max_gen_toks=config.max_gen_toks,
        resume_path=dp.journal_path(scores_dir),
        fingerprint=scoring_id,
        show_progress=options.show_progress,
        rank=dp.rank,
        world_size=dp.world_size,
        prefetch=options.prefetch,
    )
    try:  # the journal is closed (and its lock dropped) however the run ends
        # Before any forward pass; with --truncate-prompts, also which items' text to cut.
        prompts = check_prompt_lengths(lm, docs, str(config.data), config.truncate_prompts)
        return _evaluate(
            spec, plan, excluded, dp, lm, prompts, data_sha, run_dir, scores_dir, started
        )
    finally:
        lm.close()


def _evaluate(
    spec: RunSpec,
    plan: TaskPlan,
    excluded: dict[str, dict[str, int]],
    dp: Any,
    lm: Any,
    prompts: dict[str, Any],
    data_sha: str,
    run_dir: Path,
    scores_dir: Path,
    started: float,
) -> RunOutcome:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    config, options, tasks = spec.config, spec.options, plan.tasks
    run_id, scoring_id = run_dir.name, scores_dir.name
    dp.preload(lm.store, scores_dir)
    resumed = len(lm.store.done)
    metadata = {
        "data": str(config.data),
        "image_root": config.image_root,
        "image_map": config.image_map,
        "skip_missing": config.skip_missing,
        "truncations": prompts.get("truncated") or None,  # lm-eval's load cuts the same text
    }
    # Only our folder: indexing lm-eval's ~14,000 built-in task YAMLs costs ~30 s per run.
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    out = simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        log_samples=True,
        limit=config.limit,
        bootstrap_iters=0,
        random_seed=config.seed,
        numpy_random_seed=config.seed,
        torch_random_seed=config.seed,
        fewshot_random_seed=config.seed,
    )
    dp.collect(lm)  # rank 0 needs the scores the other ranks computed, for the sample rows
    if out is None:  # non-zero ranks in a multi-process run
        return RunOutcome(run_dir, None)

    B, seed = config.bootstrap_samples, config.seed
    rows: list[dict[str, Any]] = []
    subtasks: dict[str, SubtaskResult] = {}
    perception_rows: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        examples = sorted(out["samples"][task], key=lambda e: e["doc_id"])
        lm_metrics = out["results"].get(task, {})
        if task in TEXT_TASK_NAMES.values():
            task_rows = [text_row(task, e) for e in examples]
            subtasks[task] = text_subtask(
                task, task_rows, excluded[task], B, seed, config.text_metrics
            )
        else:
            task_rows = [perception_row(task, e, lm.score_for) for e in examples]
            perception_rows[task] = task_rows
            subtasks[task] = perception_subtask(
                task, task_rows, lm_metrics, excluded[task], B, seed
            )
        rows.extend(task_rows)

    adapter = lm.adapter
    info = adapter.model_info()
    synthetic = _is_synthetic(config.data)
    model = ModelInfo(
        name=options.display_name
        or (adapter.display_name or adapter.name) + (" (smoke)" if info.get("smoke") else ""),
        adapter=config.model,
        model_args=_public_args(config.model_args),
        **{k: info.get(k) for k in ("model_id", "revision", "weights_sha256", "parameters")},
        smoke=bool(info.get("smoke")),
    )
    resolved = {
        **spec.to_json(),
        "config": {**asdict(config), "tasks": tasks, "model_args": _public_args(config.model_args)},
    }
    # A model served elsewhere (`--model openai`) has no dtype here and adds what it records
    # about the server (protocol, cost) and its ledger beside the results.
    dtype = None if adapter.dtype is None else str(adapter.dtype).replace("torch.", "")
    extra = lm.run_card_extra() if hasattr(lm, "run_card_extra") else {}
    card = make_run_card(
        seed=seed,
        device=str(adapter.device),
        dtype=dtype,
        data_file=str(config.data),
        data_sha256=data_sha,
        tasks=tasks,
        wall_time_s=round(time.time() - started, 3),
        command=list(options.command) if options.command else None,
        synthetic=synthetic,
        bootstrap={"B": B, "seed": seed, "unit": "cluster (patient/image)"},
        mc_mode=config.mc_mode,
        batch_size=options.batch_size,
        engine=lm.stats.as_dict(),
        engine_settings=lm.engine_settings(),
        requests_resumed=resumed,
        limit=config.limit,
        skip_missing=config.skip_missing,
        num_processes=dp.world_size,
        generation=lm.generation_settings(),
        config=resolved,
        scoring_id=scoring_id,
        coverage=plan.coverage(),
        prompts=prompts,
        # Everything the adapter says about itself (architecture, chat-template hash, dtype,
        # 8-bit, ...), credentials excluded, beyond the fields `ModelInfo` carries.
        model_info=_public_args(info),
        **extra,
    )
    results = Results(
        run_id=run_id,
        source="demo" if synthetic and options.source == "reproduced" else options.source,
        model=model,
        run_card=card,
        subtasks=subtasks,
        groups=perception_groups(perception_rows, B, seed),
        samples_file="samples.jsonl",
    )
    new_dir = not run_dir.exists()
    try:
        files = {"samples.jsonl": rows}
        files.update(lm.result_files() if hasattr(lm, "result_files") else {})
        path = write_results(results, run_dir / "results.json", files)
    except BaseException:
        if new_dir:  # a results file that exists is complete; a half-written folder goes
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return RunOutcome(run_dir, path)


def _public_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """Model args as recorded: never anything that looks like a credential."""
    return {
        k: v for k, v in model_args.items() if "token" not in k.lower() and "key" not in k.lower()
    }


def _is_synthetic(data: str) -> bool:
    """Phantom data sets carry a manifest beside data.json saying so (see harness.phantom)."""
    manifest = Path(data).parent / "phantom.json"
    if not manifest.is_file():
        return False
    try:
        return bool(json.loads(manifest.read_text()).get("synthetic"))
    except (json.JSONDecodeError, AttributeError):
        return False


def dry_run(spec: RunSpec) -> dict[str, Any]:
    """What a run of a served model (`--model openai`) would send, how much is cached, and the
    estimated tokens and cost: the same requests and cache keys as the run, built from the
    same task hooks; nothing is sent, written or locked."""
    from model_adapters.registry import REMOTE, build_lm
    from tasks.chexbench import utils

    config = spec.config
    if config.model not in REMOTE:
        raise UserError(
            f"--dry-run estimates the requests to a served model (--model "
            f"{' or '.join(REMOTE)}); {config.model} runs in this process"
        )
    plan = plan_tasks(config)
    docs, _ = preflight(config, plan.tasks)
    lm = build_lm(
        config.model,
        config.model_args,
        mc_mode=config.mc_mode,
        max_gen_toks=config.max_gen_toks,
        show_progress=False,
    )
    mc, text = [], []
    for task, task_docs in docs.items():
        for doc in task_docs:
            images = (
                [] if task.endswith("summarization") else [ImageRef(p) for p in doc["image_paths"]]
            )
            visual = {"visual": images}
            if "options" in doc:  # the YAML's doc_to_text and target_delimiter
                mc.extend(
                    _Request((utils.doc_to_text(doc), " " + o, visual), doc, task)
                    for o in doc["options"]
                )
            else:  # the text YAMLs' generation_kwargs: until [], no max_gen_toks
                prompt = (
                    utils.summarization_text(doc)
                    if task.endswith("summarization")
                    else utils.generation_text(doc)
                )
                text.append(
                    _Request((prompt, {"until": [], "do_sample": False}, visual), doc, task)
                )
    return {"tasks": plan.tasks, **lm.plan_dry_run(mc, text)}


@dataclass(frozen=True)
class _Request:
    """An lm-eval request as the model sees it (args, its doc and task), for the dry run."""

    args: tuple[Any, ...]
    doc: dict[str, Any]
    task_name: str
