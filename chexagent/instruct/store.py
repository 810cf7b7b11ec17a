"""The instance store: JSONL shards plus an `index.json`, read back as a stream.

Shards are written atomically and the index last, so a store with an index is complete; the
loader checks each shard's count against the index and names the shard and line of bad rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from chexagent.instruct.schema import Instance
from harness.io import atomic_write_json, atomic_write_jsonl

INDEX = "index.json"


def write_store(
    folder: str | Path,
    instances: Iterable[Instance],
    shard_size: int = 50_000,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    it = iter(instances)
    shards, pairs, total = [], {}, 0
    while chunk := list(islice(it, shard_size)):
        name = f"shard-{len(shards):05d}.jsonl"
        atomic_write_jsonl(folder / name, (i.model_dump() for i in chunk))
        shards.append({"file": name, "count": len(chunk)})
        for inst in chunk:
            pairs[inst.pair] = pairs.get(inst.pair, 0) + 1
        total += len(chunk)
    index = {
        "format": "chexinstruct-store",
        "version": 1,
        "num_instances": total,
        "shards": shards,
        "pairs": dict(sorted(pairs.items())),
        **(extra or {}),
    }
    atomic_write_json(folder / INDEX, index)
    return index


class InstanceStore:
    """A read-only view of a store folder; iterating streams instances shard by shard."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.folder}: no {INDEX}; build one with `chexagent data build`"
            )
        self.index = json.loads(path.read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return int(self.index["num_instances"])

    def __iter__(self) -> Iterator[Instance]:
        for shard in self.index["shards"]:
            path = self.folder / shard["file"]
            n = 0
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    try:
                        yield Instance.model_validate_json(line)
                    except ValueError as exc:
                        raise ValueError(f"{path}:{lineno}: bad instance ({exc})") from exc
                    n += 1
            if n != shard["count"]:
                raise ValueError(f"{path}: {n} instances, index says {shard['count']}")
