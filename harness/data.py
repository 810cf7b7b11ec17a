"""Reading the official CheXbench ``data.json`` into validated, typed items.

The official file is one JSON object keyed by task name; its paths point into the authors'
folders and its options carry nulls/NaNs for absent choices. Everything downstream (tasks,
stats, reader study) works on the typed items here, so the quirks are handled once.

The loader is strict where a file could otherwise be scored wrong without a word (docs/data.md):
an empty file or task, a key given twice (JSON keeps the last), one task under two aliases (its
items would be counted twice), options with a gap (`answer` indexes the options that remain,
as in the official code), empty or repeated options, text that is not valid Unicode, and JSON
nested deeper than the format has any use for are refused with one line naming the file, task
and item. `chexbench data validate` and `chexbench run` both read files through `load_data`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.errors import UserError
from harness.taxonomy import (
    IGNORED_DATA_KEYS,
    Subtask,
    resolve_dataset,
    resolve_task,
    subtask_for,
)


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, task and item."""


class PerceptionItem(BaseModel):
    """One multiple-choice question, options already cleaned of null/NaN entries."""

    item_id: str
    task: str  # task slug, e.g. "view_classification"
    dataset: str  # dataset slug, e.g. "mimic_cxr"
    data_source: str
    index: int  # position in the task's list in data.json
    question: str
    options: list[str] = Field(min_length=2)
    answer: int
    image_paths: list[str] = Field(min_length=1)  # as written in data.json
    cluster_id: str  # patient/study when the path reveals one, else the item
    extra: dict[str, Any] = Field(default_factory=dict)


class TextItem(BaseModel):
    """A findings generation (images + indication) or summarization (findings) item."""

    item_id: str
    task: str  # "findings_generation" | "findings_summarization"
    dataset: str
    data_source: str
    index: int
    image_paths: list[str] = Field(default_factory=list)
    indication: str | None = None
    findings: str | None = None
    impression: str | None = None
    cluster_id: str

    @property
    def reference(self) -> str | None:
        """Generation is scored against the findings, summarization against the impression."""
        return self.findings if self.task == "findings_generation" else self.impression


_PATIENT_PATTERNS = (
    re.compile(r"/(p\d{8})/"),  # MIMIC-CXR files/p10/p10000032/s5.../
    re.compile(r"(patient\d+)/"),  # CheXpert
)


def cluster_id_for(paths: Iterable[str], fallback: str) -> str:
    """The resampling unit for the cluster bootstrap: the patient when the path names one."""
    for path in paths:
        for pattern in _PATIENT_PATTERNS:
            m = pattern.search("/" + path)
            if m:
                return m.group(1)
    paths = list(paths)
    return paths[0] if paths else fallback


def _split_paths(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split("|")]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = [p.strip() for p in value]
    elif value is None:
        return []
    else:
        raise DataError(f"{where}: image_path must be a string or a list of strings, got {value!r}")
    return [p for p in parts if p]


def _is_option(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return isinstance(value, str)


def _options(sample: dict[str, Any], where: str) -> list[str]:
    """The options that remain after null/NaN ones are dropped, refusing files where that rule
    would silently re-point `answer` (a gap), or where two options cannot be told apart."""
    numbered = sorted((int(k.split("_")[1]), k) for k in sample if re.fullmatch(r"option_\d+", k))
    slots = [sample.get(f"option_{n}") for n in range(numbered[-1][0] + 1)] if numbered else []
    present = [n for n, v in enumerate(slots) if _is_option(v)]
    if present and present != list(range(len(present))):
        gap = next(n for n in range(len(slots)) if n not in present)
        after = next(n for n in present if n > gap)
        answer = sample.get("answer")
        meant = ""
        if type(answer) is int and 0 <= answer < len(present) and present[answer] != answer:
            meant = f"answer {answer} means option_{present[answer]}, not option_{answer}; "
        raise DataError(
            f"{where}: option_{gap} is {_absent_name(slots[gap])} but option_{after} is not. "
            "The official code drops null options and 'answer' indexes the options that remain "
            "(evaluation_chexbench/axis_1_image_perception/run_likelihood.py:73-75), so a gap "
            f"moves the answer: {meant}renumber the options without gaps so the file says "
            "which option it means"
        )
    options = [slots[n] for n in present]
    if len(options) < 2:
        raise DataError(
            f"{where}: needs at least 2 options, found {len(options)} ({[k for _, k in numbered]})"
        )
    seen: dict[str, int] = {}
    for n, option in enumerate(options):
        if not option.strip():
            raise DataError(f"{where}: option_{n} is empty")
        norm = " ".join(option.split()).casefold()
        if norm in seen:
            raise DataError(
                f"{where}: option_{seen[norm]} and option_{n} are the same option "
                f"({option.strip()!r}); the model could not pick the right one"
            )
        seen[norm] = n
    return options


def _absent_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"not a string ({type(value).__name__})"


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


@dataclass
class CheXbenchData:
    """All items of one data file, plus what was skipped while reading it."""

    path: Path
    perception: list[PerceptionItem] = field(default_factory=list)
    text: list[TextItem] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    def items_for(self, subtask: Subtask) -> list[PerceptionItem | TextItem]:
        pool = self.perception if subtask.task.kind == "perception" else self.text
        return [
            i for i in pool if i.task == subtask.task.slug and i.dataset == subtask.dataset.slug
        ]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_perception(
    sample: Any, task_slug: str, key: str, idx: int, where: str
) -> PerceptionItem:
    if not isinstance(sample, dict):
        raise DataError(f"{where}: expected an object, got {type(sample).__name__}")
    source = sample.get("data_source")
    if not isinstance(source, str):
        raise DataError(f"{where}: missing or non-string 'data_source'")
    dataset = resolve_dataset(source)
    if dataset is None:
        raise DataError(f"{where}: unknown data_source {source!r} (add it to harness/taxonomy.py)")
    question = sample.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: missing or empty 'question'")
    options = _options(sample, where)
    answer = sample.get("answer")
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise DataError(f"{where}: 'answer' must be an integer index, got {answer!r}")
    if not 0 <= answer < len(options):
        raise DataError(
            f"{where}: answer index {answer} is out of range for {len(options)} options {options!r}"
        )
    paths = _split_paths(sample.get("image_path"), where)
    if not paths:
        raise DataError(f"{where}: no image_path")
    item_id = f"{task_slug}/{idx}"
    return PerceptionItem(
        item_id=item_id,
        task=task_slug,
        dataset=dataset.slug,
        data_source=source,
        index=idx,
        question=question,
        options=options,
        answer=answer,
        image_paths=paths,
        cluster_id=cluster_id_for(paths, item_id),
        extra={
            k: sample[k] for k in ("slice",) if k in sample and isinstance(sample[k], str | int)
        },
    )


def _parse_text(sample: Any, task_slug: str, idx: int, where: str) -> TextItem:
    if not isinstance(sample, dict):
        raise DataError(f"{where}: expected an object, got {type(sample).__name__}")
    source = sample.get("data_source") or "MIMIC-CXR"
    dataset = resolve_dataset(source) if isinstance(source, str) else None
    if dataset is None:
        raise DataError(f"{where}: unknown data_source {source!r}")
    paths = _split_paths(sample.get("image_path"), where)
    item_id = f"{task_slug}/{idx}"
    item = TextItem(
        item_id=item_id,
        task=task_slug,
        dataset=dataset.slug,
        data_source=source,
        index=idx,
        image_paths=paths,
        indication=_text_or_none(sample.get("section_indication")),
        findings=_text_or_none(sample.get("section_findings")),
        impression=_text_or_none(sample.get("section_impression")),
        cluster_id=cluster_id_for(paths, item_id),
    )
    if task_slug == "findings_generation" and not paths:
        raise DataError(f"{where}: findings generation needs image_path")
    if task_slug == "findings_summarization" and item.findings is None:
        raise DataError(f"{where}: findings summarization needs section_findings")
    return item


# A CheXbench file is 4 levels deep (tasks -> lists -> items -> path lists); anything deeper
# is not CheXbench data, and Python's parser fails with RecursionError somewhere past ~1000.
MAX_JSON_DEPTH = 8


class _Object(dict):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    dups = []
    for key, value in pairs:
        if key in obj:
            dups.append(key)
        obj[key] = value
    if dups:
        obj.duplicates = tuple(dups)
    return obj


def _read_json(path: Path) -> Any:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty (expected a JSON object keyed by task name)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        return json.loads(text, object_pairs_hook=_object)
    except RecursionError:
        raise DataError(
            f"{path}: JSON nested too deeply to read (a CheXbench file is 4 levels deep)"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _check_values(value: Any, where: str, depth: int = 1) -> None:
    """Refuse what JSON allows but a CheXbench item cannot mean: a key given twice, text that
    is not valid Unicode (an unpaired surrogate, written as a \\ud800 escape), deep nesting.
    Iterative, so a hostile file cannot exhaust the stack here either."""
    stack: list[tuple[Any, str, int]] = [(value, "", depth)]
    while stack:
        node, field, level = stack.pop()
        at = f" in {field!r}" if field else ""
        if level > MAX_JSON_DEPTH:
            raise DataError(
                f"{where}: nested more than {MAX_JSON_DEPTH} levels deep{at}; "
                "a CheXbench item holds strings, numbers and lists of paths"
            )
        if isinstance(node, str):
            _check_unicode(node, where, field or "value")
        elif isinstance(node, dict):
            if getattr(node, "duplicates", ()):
                raise DataError(
                    f"{where}: key {node.duplicates[0]!r} is given more than once{at}"
                    " (JSON keeps only the last value; remove the other)"
                )
            for key, child in node.items():
                _check_unicode(key, where, "a key")
                stack.append((child, key if not field else f"{field}.{key}", level + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{field}[{n}]", level + 1) for n, child in enumerate(node))


def _check_unicode(text: str, where: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise DataError(
            f"{where}: {field} is not valid Unicode (unpaired surrogate "
            f"\\u{ord(bad):04x} at character {exc.start}); fix the file's text "
            "encoding"
        ) from None


def load_data(path: str | Path) -> CheXbenchData:
    """Parse and validate a CheXbench data.json; raises DataError naming file, task and index."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: data file not found. The official file is the gated Hugging Face dataset "
            "StanfordAIMI/chexbench (data.json); `chexbench demo` writes a synthetic one."
        )
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataError(
            f"{path}: expected a JSON object keyed by task name, got {type(raw).__name__}"
        )
    if raw.duplicates:
        raise DataError(
            f"{path}: task key {raw.duplicates[0]!r} is given more than once (JSON "
            "keeps only the last list; merge them into one)"
        )
    data = CheXbenchData(path=path)
    keys_of: dict[str, str] = {}
    for key, samples in raw.items():
        _check_unicode(key, str(path), "a task key")
        task = resolve_task(key)
        if task is None:
            if key in IGNORED_DATA_KEYS:
                data.ignored_keys.append(key)
                continue
            raise DataError(
                f"{path}: unknown task key {key!r} (known aliases: harness/taxonomy.py)"
            )
        if task.slug in keys_of:
            raise DataError(
                f"{path}: task keys {keys_of[task.slug]!r} and {key!r} both name {task.title}; "
                "their items would share ids and be counted twice: merge them under one key"
            )
        keys_of[task.slug] = key
        if not isinstance(samples, list):
            raise DataError(f"{path}: task {key!r} must map to a list of samples")
        if not samples:
            raise DataError(f"{path}: task {key!r} has no items (drop the key, or fill it)")
        for idx, sample in enumerate(samples):
            where = f"{path}: task {key!r}, item {idx}"
            _check_values(sample, where, depth=3)
            if task.kind == "perception":
                item = _parse_perception(sample, task.slug, key, idx, where)
                if subtask_for(task.slug, item.dataset) is None:
                    raise DataError(
                        f"{where}: dataset {item.data_source!r} is not part of {task.title} in CheXbench"
                    )
                data.perception.append(item)
            else:
                data.text.append(_parse_text(sample, task.slug, idx, where))
    if not data.perception and not data.text:
        raise DataError(
            f"{path}: no CheXbench items (the file has no task among the paper's "
            f"8{'; ignored: ' + ', '.join(data.ignored_keys) if data.ignored_keys else ''})"
        )
    return data
