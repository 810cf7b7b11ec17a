"""Reading a results folder into leaderboard entries, one per valid results JSON.

A leaderboard that crashes on one bad file is a leaderboard anyone can take down with an
upload, so every file is validated on its own and a failure becomes a `Rejected` row with
the reason instead of an exception. Each entry's provenance is computed from its evidence
(leaderboard.provenance), never taken from the file's `source` claim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.results_schema import Results, ResultsError, parse_json, parse_results
from harness.safe_text import printable
from leaderboard.provenance import (  # noqa: F401  (re-exported: the page and tests use them)
    ACCEPTED,
    DEMO,
    OFFICIAL_DATA_FILE,
    PAPER,
    PAPER_DIR,
    PENDING,
    PROVENANCE_HELP,
    PROVENANCES,
    REPRODUCED,
    TRUSTED,
    OfficialData,
    Provenance,
    assess,
    load_official_data,
)

SUBMISSIONS_DIR = "submissions"
STATUS_FILE = "status.json"  # a submission's review state; not a results file


@dataclass(frozen=True)
class Entry:
    """One results file the page can show."""

    results: Results
    path: Path
    provenance: str  # the origin (PAPER, REPRODUCED, ...): what the row filters use
    label: str = ""  # unique column label, set by `load_folder`
    trust: Provenance | None = field(default=None, compare=False)  # None: `provenance` alone

    @property
    def flags(self) -> tuple[str, ...]:
        return self.trust.flags if self.trust else ()

    @property
    def comparable(self) -> bool:
        """Whether this row may be called best (see leaderboard.provenance)."""
        return (self.trust or Provenance(self.provenance)).comparable

    def comparable_subtask(self, name: str) -> bool:
        return self.comparable and not (self.trust and name in self.trust.partial)

    def same_model(self, other: Entry) -> bool:
        """The same model across provenances (a paper row and its reproduction): same hub id,
        or the same name up to case and dashes ("Med-Flamingo" is "MedFlamingo")."""
        a, b = self.results.model, other.results.model
        if a.adapter and b.adapter and a.adapter != b.adapter:
            return False  # LLaVA-Med v1.5 renamed "LLaVA-Med" is still not the paper's v0
        return bool(a.model_id and a.model_id == b.model_id) or model_key(a.name) == model_key(
            b.name
        )

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


def _submission_status(path: Path, root: Path) -> str | None:
    """The review status of the submission holding `path`, or None outside submissions/.
    Anything but a readable "accepted" or "rejected" counts as pending."""
    try:
        rel = path.relative_to(root / SUBMISSIONS_DIR)
    except ValueError:
        return None
    status_file = root / SUBMISSIONS_DIR / rel.parts[0] / STATUS_FILE
    try:
        status = parse_json(status_file.read_bytes(), str(status_file))
    except (OSError, ResultsError):
        return "pending"
    value = status.get("status") if isinstance(status, dict) else None
    return value if value in ("accepted", "rejected") else "pending"


def _in_paper_folder(path: Path, root: Path) -> bool:
    """Whether `path` lies under `<root>/paper/`, or `root` is that folder itself (the paper
    rows loaded on their own)."""
    rel = path.relative_to(root)
    return root.resolve().name == PAPER_DIR or (len(rel.parts) > 1 and rel.parts[0] == PAPER_DIR)


def _is_candidate(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    if any(part.startswith(".") for part in rel.parts):
        return False  # temp files of atomic writes, editor files, the submissions lock
    if rel.parts == (OFFICIAL_DATA_FILE,):
        return False  # the maintainer's list of official data hashes
    return path.name != STATUS_FILE


def load_folder(root: str | Path) -> Loaded:
    """Every `*.json` under `root`, validated and assessed (leaderboard.provenance);
    rejected submissions are left out entirely."""
    root = Path(root)
    entries: list[Entry] = []
    rejected: list[Rejected] = []
    if not root.is_dir():
        return Loaded((), (Rejected(root, f"{root}: results folder does not exist"),))
    official = load_official_data(root)
    if official.problem:
        rejected.append(Rejected(official.path or root, official.problem))
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
        trust = assess(results, status, official, in_paper_folder=_in_paper_folder(path, root))
        entries.append(Entry(results, path, trust.origin, trust=trust))
    return Loaded(tuple(_label(entries)), tuple(rejected))


MC_BY_GENERATION = "MC by generation"  # label mark of runs whose multiple choice was generated


def mc_mode(results: Results) -> str | None:
    """How a run scored multiple choice (`run_card.mc_mode`): "loglikelihood" (the paper's
    rule), "generate" (a letter generated, CheXagent-2's official mode), None for paper rows."""
    return results.run_card.mc_mode if results.run_card is not None else None


def _label(entries: list[Entry]) -> list[Entry]:
    """Column labels: "model · provenance · flags" (plus the kind for judge, fairness, ...
    files, and "MC by generation" for a run that generated its multiple-choice answers, so a
    model run in both modes gets two labelled columns, never one), with the run id added only
    where two still collide."""
    base = [
        f"{printable(e.results.model.name)} · {e.trust.text if e.trust else e.provenance}"
        + ("" if e.results.kind == "run" else f" · {e.results.kind}")
        + (f" · {MC_BY_GENERATION}" if mc_mode(e.results) == "generate" else "")
        for e in entries
    ]
    out = []
    for entry, label in zip(entries, base, strict=True):
        if base.count(label) > 1:
            label = f"{label} · {entry.results.run_id}"
        out.append(Entry(entry.results, entry.path, entry.provenance, label, entry.trust))
    return out
