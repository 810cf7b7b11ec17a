"""The results file format, shared by `chexbench run`, `score`, `judge`, `fairness`,
`reader-study analyze`, the paper rows and the leaderboard.

It is generic on purpose: a subtask is a name with a dict of metrics, so a new task or metric
reaches the leaderboard without code changes. `python -m harness.results_schema` rewrites the
published JSON Schema (harness/schemas/results.schema.json); a test keeps the two in sync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "results.schema.json"

Source = Literal["paper", "reproduced", "submitted", "demo"]
Kind = Literal["run", "judge", "fairness", "reader_study", "comparison"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricValue(_Strict):
    """One number with its uncertainty. `value` is None only when `unavailable` says why."""

    value: float | None
    stderr: float | None = None
    ci: tuple[float, float] | None = None  # 95% interval, same scale as value
    ci_method: str | None = None  # e.g. "percentile-bootstrap/cluster", "wilson"
    n: int | None = None
    unavailable: str | None = None  # "<reason>; <file>; <command to fix>"
    config: dict[str, Any] | None = None  # how it was computed (scorer model, layer, ...)


class SubtaskResult(_Strict):
    name: str  # lm-eval task name, e.g. chexbench_view_classification_mimic_cxr
    task: str  # task slug (harness.taxonomy)
    dataset: str  # dataset slug
    kind: Literal["perception", "text"]
    n: int  # items scored
    excluded: int = 0  # items dropped (missing images with --skip-missing, empty references)
    excluded_reasons: dict[str, int] = Field(default_factory=dict)
    headline: str | None = None  # the metric the leaderboard shows first
    metrics: dict[str, MetricValue]
    counts: dict[str, int] = Field(default_factory=dict)  # e.g. unparseable answers


class GroupResult(_Strict):
    name: str
    members: list[str]
    metrics: dict[str, MetricValue]


class ModelInfo(_Strict):
    name: str  # display name, e.g. "CheXagent"
    adapter: str | None = None
    model_id: str | None = None  # hub id or local folder
    revision: str | None = None
    weights_sha256: str | None = None
    smoke: bool = False  # a random-weight smoke model: its numbers mean nothing
    parameters: int | None = None
    model_args: dict[str, Any] = Field(default_factory=dict)


class RunCard(_Strict):
    harness_version: str
    harness_commit: str | None
    packages: dict[str, str]
    command: list[str] | None = None
    created_at: str
    wall_time_s: float | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int
    bootstrap: dict[str, Any] | None = None  # {"B": 1000, "seed": 1234, "unit": "cluster"}
    data_file: str | None = None
    data_sha256: str | None = None
    task_config_sha256: dict[str, str] = Field(default_factory=dict)
    mc_mode: str | None = None
    batch_size: int | None = None
    synthetic: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)


class Results(_Strict):
    schema_version: Literal["1.0"] = SCHEMA_VERSION
    run_id: str
    kind: Kind = "run"
    source: Source
    model: ModelInfo
    run_card: RunCard | None = None  # None only for paper-reported rows
    subtasks: dict[str, SubtaskResult] = Field(default_factory=dict)
    groups: dict[str, GroupResult] = Field(default_factory=dict)
    samples_file: str | None = None  # JSONL beside this file, relative name
    citation: str | None = None  # for paper rows: table and page
    # Kind-specific blocks; their shapes are documented in docs/results-schema.md.
    judge: dict[str, Any] | None = None
    fairness: dict[str, Any] | None = None
    reader_study: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None


def json_schema() -> dict[str, Any]:
    schema = Results.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://chexbench.org/schemas/results-{SCHEMA_VERSION}.json"
    return schema


def write_schema(path: Path = SCHEMA_PATH) -> None:
    from harness.io import atomic_write_text

    atomic_write_text(path, json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


def validate_results(obj: dict[str, Any]) -> list[str]:
    """Errors against the published JSON Schema (what the leaderboard trusts), empty if valid."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


if __name__ == "__main__":
    write_schema()
    print(f"wrote {SCHEMA_PATH}")
