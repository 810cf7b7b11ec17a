"""The one way a results file is named and written, for every command that writes one.

A results file is written last, after the files it points to (samples, ledgers), each
atomically: a results file that exists is complete. It is validated against the published
schema first; a file that fails it is a bug in the harness (`InvariantError`), never written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import InvariantError
from harness.io import atomic_write_json, atomic_write_jsonl


def results_id(prefix: str, identity: Any) -> str:
    """`<prefix>-<12 hex>`: the same identity (any JSON-able value) always gives the same id."""
    canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def write_results(
    results: Any, path: str | Path, rows: Mapping[str | Path, Iterable[Any]] | None = None
) -> Path:
    """Validate `results` (a `Results` model or its dict), write `rows` (JSONL files, e.g.
    samples and ledgers; relative names are beside `path`), then the results JSON."""
    from harness.results_schema import validate_results

    payload = results.model_dump(mode="json") if hasattr(results, "model_dump") else results
    errors = validate_results(payload)
    if errors:
        raise InvariantError(f"{path}: results fail the schema: {'; '.join(errors[:3])}")
    path = Path(path)
    for name, file_rows in (rows or {}).items():
        target = Path(name)
        atomic_write_jsonl(target if target.is_absolute() else path.parent / target, file_rows)
    atomic_write_json(path, payload)
    return path
