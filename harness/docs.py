"""Turning validated data.json items into lm-eval docs for one subtask.

The same function serves the task loader (inside lm-eval) and `chexbench run`'s pre-flight
check, so the items a run scores and the exclusions it reports can never disagree.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.data import CheXbenchData, DataError, PerceptionItem, load_data
from harness.images import ImageResolver, check_image
from harness.taxonomy import SUBTASK_BY_NAME, TEXT_TASK_NAMES

GENERATION_MAX_IMAGES = 2  # the official code uses the first two images
# The one free-text field of an item, which `chexbench run --truncate-prompts` may shorten.
_FREE_TEXT = {"findings_generation": "indication", "findings_summarization": "findings"}


def free_text_field(task: str) -> str:
    """The doc field holding an item's own text (the question, the indication, the findings),
    for a task slug or its lm-eval name."""
    return next((f for t, f in _FREE_TEXT.items() if task.endswith(t)), "question")


def drop_leading_words(text: str, words: int) -> str:
    """`text` without its first `words` words, the rest byte for byte (lm-eval also truncates
    a context from the left, keeping the end nearest the answer)."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    return text[starts[words] :] if words < len(starts) else ""


def word_count(text: str) -> int:
    return len(re.findall(r"\S+", text))


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> CheXbenchData:
    return load_data(path)


def cached_data(path: str | Path) -> CheXbenchData:
    path = Path(path)
    if not path.is_file():
        return load_data(path)  # raises the helpful DataError
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


def subtasks_of(name: str) -> list[str]:
    """The subtask names a text task name stands for (generation spans two datasets)."""
    for slug, task_name in TEXT_TASK_NAMES.items():
        if name == task_name:
            return [s for s in SUBTASK_BY_NAME if SUBTASK_BY_NAME[s].task.slug == slug]
    return [name]


def build_docs(
    subtask: str,
    data: str | Path | None,
    image_root: str | None = None,
    image_map: str | None = None,
    skip_missing: bool = False,
    truncations: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Docs for one lm-eval task (a perception subtask or a text task) and exclusion counts.
    `truncations` (item id -> leading words dropped from its free text) is what the run's
    context check decided under `--truncate-prompts`; lm-eval's own load applies the same."""
    if not data:
        raise DataError(
            f"task {subtask}: no data file given. Pass --data data.json to `chexbench run`, or "
            '--metadata \'{"data": "data.json", "image_root": "DIR"}\' to `chexbench lm-eval`.'
        )
    dataset = cached_data(data)
    # Without --image-root, paths are relative to the folder holding data.json.
    resolver = ImageResolver.from_args(image_root or Path(data).parent, image_map)
    items = [i for name in subtasks_of(subtask) for i in dataset.items_for(SUBTASK_BY_NAME[name])]
    if not items:
        raise DataError(f"{data}: task {subtask} has no items in this data file")
    docs: list[dict[str, Any]] = []
    excluded: dict[str, int] = {}
    for item in items:
        paths = item.image_paths
        if item.task == "findings_generation":
            paths = paths[:GENERATION_MAX_IMAGES]
        resolved = [resolver.resolve(p, item.dataset) for p in paths]
        problem = next(((p, why) for p in resolved if (why := check_image(p))), None)
        if problem is not None:
            if not skip_missing:
                raise DataError(
                    f"{data}: task {subtask}, item {item.index} ({item.item_id}): image "
                    f"{problem[0]} is {problem[1]}. Fix --image-root/--image-map, or pass "
                    "--skip-missing to exclude such items (the results record how many)."
                )
            excluded[f"image_{problem[1].split(' ')[0]}"] = (
                excluded.get(f"image_{problem[1].split(' ')[0]}", 0) + 1
            )
            continue
        doc: dict[str, Any] = {
            "item_id": item.item_id,
            "index": item.index,
            "dataset": item.dataset,
            "image_paths": [str(p) for p in resolved],
            "raw_image_paths": list(paths),
            "cluster_id": item.cluster_id,
        }
        if isinstance(item, PerceptionItem):
            doc.update(question=item.question, options=item.options, answer=item.answer)
        else:
            if item.reference is None:
                excluded["empty_reference"] = excluded.get("empty_reference", 0) + 1
                continue
            doc.update(
                indication=item.indication or "",
                findings=item.findings or "",
                reference=item.reference,
            )
        if truncations and item.item_id in truncations:
            field = free_text_field(item.task)
            doc[field] = drop_leading_words(doc[field], truncations[item.item_id])
        docs.append(doc)
    if not docs:
        raise DataError(f"{data}: task {subtask}: every item was excluded ({excluded})")
    return docs, excluded
