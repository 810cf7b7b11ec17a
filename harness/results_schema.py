"""The results file format, shared by `chexbench run`, `score`, `judge`, `fairness`,
`reader-study analyze`, the paper rows and the leaderboard.

It is generic on purpose: a subtask is a name with a dict of metrics, so a new task or metric
reaches the leaderboard without code changes. `python -m harness.results_schema` rewrites the
published JSON Schema (harness/schemas/results.schema.json); a test keeps the two in sync.

The JSON Schema says the shape (required blocks per kind, counts >= 0); `validate_results`
adds what a JSON Schema cannot say about numbers: every number finite, each metric inside
its range (`harness.taxonomy.metric_bounds`), and lo <= value <= hi. Every reader and writer
of results goes through `validate_results`, so a file either means what the docs say or is
refused with the JSON path of the first problems.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UserError
from harness.taxonomy import metric_bounds

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "results.schema.json"
MAX_RESULTS_BYTES = 20 * 1024 * 1024  # a results JSON is a few hundred kB at most
MAX_JSON_DEPTH = 64  # the deepest block (reader_study) nests 8 levels
CI_TOLERANCE = 1e-9  # rounding slack in lo <= value <= hi

Count = Annotated[int, Field(ge=0)]

Source = Literal["paper", "reproduced", "submitted", "demo"]
Kind = Literal["run", "judge", "fairness", "reader_study", "comparison"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricValue(_Strict):
    """One number with its uncertainty. `value` is None only when `unavailable` says why."""

    value: float | None
    stderr: float | None = Field(default=None, ge=0)
    ci: tuple[float, float] | None = None  # 95% interval, same scale as value; lo <= value <= hi
    ci_method: str | None = None  # e.g. "percentile-bootstrap/cluster", "wilson"
    n: Count | None = None
    unavailable: str | None = None  # "<reason>; <file>; <command to fix>"
    config: dict[str, Any] | None = None  # how it was computed (scorer model, layer, ...)


class SubtaskResult(_Strict):
    name: str  # lm-eval task name, e.g. chexbench_view_classification_mimic_cxr
    task: str  # task slug (harness.taxonomy)
    dataset: str  # dataset slug
    kind: Literal["perception", "text"]
    n: Count  # items scored
    excluded: Count = 0  # items dropped (missing images with --skip-missing, empty references)
    excluded_reasons: dict[str, Count] = Field(default_factory=dict)
    headline: str | None = None  # the metric the leaderboard shows first
    metrics: dict[str, MetricValue]
    counts: dict[str, Count] = Field(default_factory=dict)  # e.g. unparseable answers


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
    parameters: Count | None = None
    model_args: dict[str, Any] = Field(default_factory=dict)


class RunCard(_Strict):
    harness_version: str
    harness_commit: str | None
    packages: dict[str, str]
    command: list[str] | None = None
    created_at: str
    wall_time_s: float | None = Field(default=None, ge=0)
    device: str | None = None
    dtype: str | None = None
    seed: int
    bootstrap: dict[str, Any] | None = None  # {"B": 1000, "seed": 1234, "unit": "cluster"}
    data_file: str | None = None
    data_sha256: str | None = None
    task_config_sha256: dict[str, str] = Field(default_factory=dict)
    mc_mode: str | None = None
    batch_size: Count | None = None
    synthetic: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)


def _kind_rules() -> list[dict[str, Any]]:
    """What each kind must carry, as JSON Schema conditionals: a run has subtasks, a judge
    file a judge block, ...; and every file but a paper row has a run card (the provenance the
    leaderboard computes comes from it)."""
    rules: list[dict[str, Any]] = [
        {
            "if": {"properties": {"kind": {"const": "run"}}},  # kind defaults to run
            "then": {"required": ["subtasks"], "properties": {"subtasks": {"minProperties": 1}}},
        },
        {
            "if": {"properties": {"source": {"not": {"const": "paper"}}}},
            "then": {"required": ["run_card"], "properties": {"run_card": {"type": "object"}}},
        },
    ]
    for kind in ("judge", "fairness", "reader_study", "comparison"):
        rules.append(
            {
                "if": {"required": ["kind"], "properties": {"kind": {"const": kind}}},
                "then": {"required": [kind], "properties": {kind: {"type": "object"}}},
            }
        )
    return rules


class Results(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": _kind_rules()})

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


class ResultsError(UserError, ValueError):
    """A results file that is not valid JSON or fails validation; the message names it."""


def validate_results(obj: Any) -> list[str]:
    """Every reason `obj` is not a valid results file ("json/path: message"), empty if valid:
    the published JSON Schema first, then the numeric rules it cannot express."""
    import jsonschema

    if not isinstance(obj, dict):
        return [f"<root>: expected a JSON object, got {type(obj).__name__}"]
    errors = [
        f"{_path(p)}: non-finite number {v!r} (JSON has no NaN or Infinity)"
        for p, v in _non_finite(obj)
    ]
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors += [
        f"{_path(err.absolute_path)}: {_message(err)}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]
    if errors:
        return errors
    return _metric_errors(obj)


def _message(err: Any) -> str:
    """The schema's message; for "null or a number >= 0" (anyOf) the number's complaint
    ("-5 is less than the minimum of 0"), not "is not valid under any of the given schemas"."""
    telling = [e for e in err.context if e.validator != "type"]
    return telling[0].message if telling else err.message


def _path(parts: Any) -> str:
    return "/".join(str(p) for p in parts) or "<root>"


def _non_finite(obj: Any) -> list[tuple[list[Any], float]]:
    """(path, value) of every NaN / infinite float, walked without recursion."""
    found, stack = [], [([], obj)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            found.append((path, node))
        elif isinstance(node, dict):
            stack.extend(([*path, k], v) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend(([*path, i], v) for i, v in enumerate(node))
    return sorted(found, key=lambda f: [str(p) for p in f[0]])


def _metric_errors(obj: dict[str, Any]) -> list[str]:
    """Ranges and CI order of every subtask and group metric (schema-valid `obj`)."""
    errors = []
    subtasks = obj.get("subtasks") or {}
    for key, sub in subtasks.items():
        for name, metric in sub["metrics"].items():
            errors += _check_metric(["subtasks", key, "metrics", name], name, sub["kind"], metric)
    for key, group in (obj.get("groups") or {}).items():
        kinds = {subtasks[m]["kind"] for m in group["members"] if m in subtasks}
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        for name, metric in group["metrics"].items():
            errors += _check_metric(["groups", key, "metrics", name], name, kind, metric)
    return errors


def _check_metric(path: list[str], name: str, kind: str, metric: dict[str, Any]) -> list[str]:
    where = _path(path)
    value, ci = metric.get("value"), metric.get("ci")
    if value is None and not metric.get("unavailable"):
        return [
            f"{where}/value: null without `unavailable` saying why (a missing metric is "
            "never silently empty)"
        ]
    lo_bound, hi_bound = metric_bounds(name, kind)
    span = "[{}, {}]".format(
        "-inf" if lo_bound is None else f"{lo_bound:g}",
        "inf" if hi_bound is None else f"{hi_bound:g}",
    )
    errors = []
    named = {"value": value} | ({"ci/0": ci[0], "ci/1": ci[1]} if ci else {})
    for part, number in named.items():
        if number is None:
            continue
        if (lo_bound is not None and number < lo_bound) or (
            hi_bound is not None and number > hi_bound
        ):
            errors.append(
                f"{where}/{part}: {number!r} is outside {span}, the range of {name} "
                "(values are fractions, not percent)"
            )
    if ci:
        lo, hi = ci
        slack = CI_TOLERANCE * max(1.0, abs(lo), abs(hi))
        if lo > hi:
            errors.append(f"{where}/ci: lower bound {lo!r} is above upper bound {hi!r}")
        elif value is not None and not (lo - slack <= value <= hi + slack):
            errors.append(f"{where}: value {value!r} lies outside its CI [{lo!r}, {hi!r}]")
    return errors


def parse_json(raw: bytes | str, where: str) -> Any:
    """JSON text as Python objects, or ResultsError naming `where`: strict JSON only (no
    NaN / Infinity tokens, no number that overflows to infinity), at most MAX_JSON_DEPTH deep,
    so a hostile file fails in one line rather than deep in a recursion."""

    def constant(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    def number(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(f"{token} overflows a float")
        return value

    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        obj = json.loads(text, parse_constant=constant, parse_float=number)
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise ResultsError(f"{where}: JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and the two hooks above
        raise ResultsError(f"{where}: not valid JSON ({exc})") from exc
    depth, stack = 0, [(1, obj)]
    while stack:
        level, node = stack.pop()
        depth = max(depth, level)
        if depth > MAX_JSON_DEPTH:
            raise ResultsError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((level + 1, child) for child in children)
    return obj


def parse_results(raw: bytes, where: str) -> Results:
    """The validated `Results` in `raw` (a file's bytes), or ResultsError naming `where` and
    the first problems. The one way results are read: the leaderboard, submissions and
    `chexbench results` all call it."""
    if len(raw) > MAX_RESULTS_BYTES:
        raise ResultsError(f"{where}: {len(raw)} bytes is over the {MAX_RESULTS_BYTES} byte limit")
    obj = parse_json(raw, where)
    errors = validate_results(obj)
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ResultsError(f"{where}: schema: " + "; ".join(errors[:3]) + more)
    try:
        return Results.model_validate(obj)
    except ValidationError as exc:  # the schema and the models should agree; be safe anyway
        raise ResultsError(f"{where}: {exc.errors()[0]['msg']}") from exc


if __name__ == "__main__":
    write_schema()
    print(f"wrote {SCHEMA_PATH}")
