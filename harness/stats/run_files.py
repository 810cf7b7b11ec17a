"""Reading finished runs back (results JSON + per-sample JSONL) for after-the-fact analyses.

`compare` and `fairness` never re-run a model: they work from the saved per-sample rows, so
the numbers they add are reproducible from the files alone. Their own outputs carry a run card
saying which inputs, seed and bootstrap settings produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.io import read_jsonl
from harness.results_schema import parse_json, validate_results
from harness.run_card import analysis_run_card  # noqa: F401  (re-exported for callers)


@dataclass
class RunFiles:
    path: Path  # the results JSON, or the samples JSONL when given directly
    results: dict[str, Any] | None
    samples_path: Path
    rows: list[dict[str, Any]]

    @property
    def name(self) -> str:
        if self.results:
            return str(self.results.get("model", {}).get("name") or self.results.get("run_id"))
        return self.samples_path.name.removesuffix(".jsonl").removesuffix(".samples")

    @property
    def source(self) -> str | None:
        return self.results.get("source") if self.results else None


def load_run(path: str | Path) -> RunFiles:
    """A results JSON (its `samples_file` is read from beside it) or a bare samples JSONL."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: run file not found (give a results JSON written by "
            "`chexbench run` or its .samples.jsonl)"
        )
    if path.suffix == ".jsonl":
        return RunFiles(path, None, path, _read_rows(path))
    results = parse_json(path.read_bytes(), str(path))  # strict JSON; ResultsError is a UserError
    errors = validate_results(results) if isinstance(results, dict) else ["not an object"]
    if errors:
        raise UserError(f"{path}: not a valid results file: {'; '.join(errors[:3])}")
    if not results.get("samples_file"):
        raise UserError(
            f"{path}: has no samples_file, so per-item analyses are impossible; "
            "re-run `chexbench run` (it writes <run>.samples.jsonl)"
        )
    samples = path.parent / results["samples_file"]
    if not samples.is_file():
        raise UserError(
            f"{path}: its samples file {samples} is missing; keep the .samples.jsonl "
            "beside the results JSON"
        )
    return RunFiles(path, results, samples, _read_rows(samples))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    for lineno, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {lineno} is not a JSON object")
    return rows
