"""Reading a results folder into leaderboard entries, one per valid results JSON.

A leaderboard that crashes on one bad file is a leaderboard anyone can take down with an
upload, so every file is validated on its own and a failure becomes a `Rejected` row with
the reason instead of an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.results_schema import Results, validate_results

SUBMISSIONS_DIR = "submissions"
STATUS_FILE = "status.json"  # a submission's review state; not a results file
MAX_RESULTS_BYTES = 20 * 1024 * 1024  # a results JSON is a few hundred kB at most

# Provenance labels, in the order the page lists them.
PAPER = "paper"
REPRODUCED = "reproduced"
PENDING = "submitted (pending)"
ACCEPTED = "submitted (accepted)"
DEMO = "synthetic demo"
PROVENANCES = (PAPER, REPRODUCED, ACCEPTED, PENDING, DEMO)
PROVENANCE_HELP = {
    PAPER: "transcribed from the CheXagent paper",
    REPRODUCED: "measured with this harness",
    ACCEPTED: "uploaded bundle a maintainer accepted",
    PENDING: "uploaded bundle awaiting review",
    DEMO: "synthetic phantom data or random weights (hidden unless asked for)",
}


@dataclass(frozen=True)
class Entry:
    """One results file the page can show."""

    results: Results
    path: Path
    provenance: str
    label: str = ""  # unique column label, set by `load_folder`

    def same_model(self, other: Entry) -> bool:
        """The same model across provenances (a paper row and its reproduction): same hub id,
        or the same name up to case and dashes ("Med-Flamingo" is "MedFlamingo")."""
        a, b = self.results.model, other.results.model
        return bool(a.model_id and a.model_id == b.model_id) or model_key(a.name) == model_key(
            b.name)

    @property
    def samples_path(self) -> Path | None:
        name = self.results.samples_file
        if not name:
            return None
        path = (self.path.parent / name).resolve()
        # A samples file must sit beside its results file: never follow a path out of it.
        if path.parent != self.path.parent.resolve() or not path.is_file():
            return None
        return path


@dataclass(frozen=True)
class Rejected:
    path: Path
    reason: str


@dataclass(frozen=True)
class Loaded:
    entries: tuple[Entry, ...]
    rejected: tuple[Rejected, ...]


def model_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_results(raw: bytes, where: str) -> Results:
    """The validated `Results` in `raw`, or ValueError naming `where` and the first problems.

    The published JSON Schema is what submitters see, so it is checked first and its messages
    are the rejection reasons; pydantic then builds the typed object.
    """
    if len(raw) > MAX_RESULTS_BYTES:
        raise ValueError(f"{where}: {len(raw)} bytes is over the {MAX_RESULTS_BYTES} byte limit")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    errors = validate_results(obj)
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ValueError(f"{where}: schema: " + "; ".join(errors[:3]) + more)
    try:
        return Results.model_validate(obj)
    except ValidationError as exc:  # the schema and the models should agree; be safe anyway
        raise ValueError(f"{where}: {exc.errors()[0]['msg']}") from exc


def _submission_status(path: Path, root: Path) -> str | None:
    """The review status of the submission holding `path`, or None outside submissions/."""
    try:
        rel = path.relative_to(root / SUBMISSIONS_DIR)
    except ValueError:
        return None
    status_file = root / SUBMISSIONS_DIR / rel.parts[0] / STATUS_FILE
    try:
        return str(json.loads(status_file.read_text(encoding="utf-8")).get("status", "pending"))
    except (OSError, json.JSONDecodeError, AttributeError):
        return "pending"


def provenance_of(results: Results, submission_status: str | None) -> str:
    """Where a number comes from. Location beats the file's own claim: an upload that says
    `source: paper` is still a submission."""
    if submission_status is not None:
        return ACCEPTED if submission_status == "accepted" else PENDING
    synthetic = results.run_card is not None and results.run_card.synthetic
    if results.source == "demo" or synthetic or results.model.smoke:
        return DEMO
    if results.source == "paper":
        return PAPER
    if results.source == "submitted":
        return PENDING
    return REPRODUCED


def _is_candidate(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if any(part.startswith(".") for part in rel.parts):
        return False  # temp files of atomic writes, editor files
    return path.name != STATUS_FILE


def load_folder(root: str | Path) -> Loaded:
    """Every `*.json` under `root`, validated; rejected submissions are left out entirely."""
    root = Path(root)
    entries: list[Entry] = []
    rejected: list[Rejected] = []
    if not root.is_dir():
        return Loaded((), (Rejected(root, f"{root}: results folder does not exist"),))
    for path in sorted(root.rglob("*.json")):
        if not path.is_file() or not _is_candidate(path, root):
            continue
        status = _submission_status(path, root)
        if status == "rejected":
            continue
        try:
            results = parse_results(path.read_bytes(), str(path.relative_to(root)))
        except (OSError, ValueError) as exc:
            rejected.append(Rejected(path, str(exc)))
            continue
        entries.append(Entry(results, path, provenance_of(results, status)))
    return Loaded(tuple(_label(entries)), tuple(rejected))


def _label(entries: list[Entry]) -> list[Entry]:
    """Column labels: "model · provenance" (plus the kind for judge, fairness, ... files), with
    the run id added only where two still collide."""
    base = [f"{e.results.model.name} · {e.provenance}"
            + ("" if e.results.kind == "run" else f" · {e.results.kind}") for e in entries]
    out = []
    for entry, label in zip(entries, base, strict=True):
        if base.count(label) > 1:
            label = f"{label} · {entry.results.run_id}"
        out.append(Entry(entry.results, entry.path, entry.provenance, label))
    return out
