"""Where a leaderboard number comes from, computed from the evidence a results file carries.

A results file's `source` field is only a claim: changing "demo" to "reproduced" in a
phantom run's JSON must not put it beside the paper. So the provenance shown is derived:

- origin: where the file lies (a bundle under `submissions/` is pending or accepted by its
  status file, whatever it claims), and whether it is a paper row or a run (a run card). A
  paper row is a file under `<results>/paper/` (the maintainer's folder of transcribed
  tables) with `source: paper` and no run card; the same claim anywhere else is only a claim
  (a local run edited to drop its run card and say "paper" would otherwise sit beside the
  paper as a comparable row), so it is pending: hidden by default, never best;
- synthetic: `run_card.synthetic`, `model.smoke` or `source: demo`; any one makes the row a
  synthetic demo, hidden by default and never submittable;
- data: a run's `run_card.data_sha256` against the official data.json hashes the maintainer
  lists in `<results>/official_data.json`; any other hash (or none) is "unverified data";
- coverage: a subtask scored on fewer items than Table 9 lists is "partial";
- prompts: a subtask where `--truncate-prompts` cut any item's text to fit the model's
  context (`run_card.extra.prompts.truncated`) is "truncated prompts": not the official
  protocol for those items, so never compared either.

Only rows from trusted origins with official data and full coverage are comparable: the
overview's "best" is chosen among them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.docs import subtasks_of
from harness.results_schema import Results, ResultsError, parse_json
from harness.taxonomy import SUBTASK_BY_NAME

OFFICIAL_DATA_FILE = "official_data.json"  # at the top of the results folder
PAPER_DIR = "paper"  # <results>/paper/: the only place a paper row can come from
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Origins, in the order the page lists them.
PAPER = "paper"
REPRODUCED = "reproduced"
ACCEPTED = "submitted (accepted)"
PENDING = "submitted (pending)"
DEMO = "synthetic demo"
PROVENANCES = (PAPER, REPRODUCED, ACCEPTED, PENDING, DEMO)
TRUSTED = (PAPER, REPRODUCED, ACCEPTED)  # the default view
PROVENANCE_HELP = {
    PAPER: "transcribed from the CheXagent paper",
    REPRODUCED: "measured with this harness",
    ACCEPTED: "uploaded bundle a maintainer accepted",
    PENDING: "uploaded bundle awaiting review (hidden unless asked for)",
    DEMO: "synthetic phantom data or random weights (hidden unless asked for)",
}

# Flags a row can carry on top of its origin.
UNVERIFIED_DATA = "unverified data"
PARTIAL = "partial"
TRUNCATED = "truncated prompts"
FLAG_HELP = {
    UNVERIFIED_DATA: "run on a data file whose sha256 is not a known official data.json",
    PARTIAL: "fewer items than Table 9 lists for at least one subtask",
    TRUNCATED: "some items' text was cut to fit the model's context (--truncate-prompts)",
}


@dataclass(frozen=True)
class OfficialData:
    """The official data.json hashes a maintainer has listed (sha256 -> description)."""

    hashes: dict[str, str]
    path: Path | None = None
    problem: str | None = None  # why the file could not be used; hashes is then empty


@dataclass(frozen=True)
class Provenance:
    origin: str
    flags: tuple[str, ...] = ()
    partial: frozenset[str] = frozenset()  # subtasks below Table 9's size or truncated
    reasons: tuple[str, ...] = ()  # one line per flag, for the run card and reviewers

    @property
    def comparable(self) -> bool:
        """Whether the row may be called best (cell by cell, partial subtasks still are not)."""
        return self.origin in TRUSTED and UNVERIFIED_DATA not in self.flags

    @property
    def text(self) -> str:
        return " · ".join((self.origin, *self.flags))


def load_official_data(results_root: str | Path) -> OfficialData:
    """`<results>/official_data.json`: {"data_sha256": {"<sha256>": "what it is"}}. Absent
    means none known yet; a malformed file is reported, never half-used."""
    path = Path(results_root) / OFFICIAL_DATA_FILE
    if not path.is_file():
        return OfficialData({}, None)
    try:
        obj = parse_json(path.read_bytes(), str(path))
    except (OSError, ResultsError) as exc:
        return OfficialData({}, path, str(exc))
    hashes = obj.get("data_sha256") if isinstance(obj, dict) else None
    if not isinstance(hashes, dict):
        return OfficialData(
            {}, path, f'{path}: expected {{"data_sha256": {{"<sha256>": "description"}}}}'
        )
    bad = [k for k in hashes if not isinstance(k, str) or not _SHA256.match(k)]
    if bad:
        return OfficialData({}, path, f"{path}: {bad[0]!r} is not a lower-case hex sha256")
    return OfficialData({k: str(v) for k, v in hashes.items()}, path)


def is_synthetic(results: Results) -> str | None:
    """Why `results` are synthetic (phantom data, random weights, a demo), or None."""
    if results.run_card is not None and results.run_card.synthetic:
        return "run_card.synthetic is true (phantom data)"
    if results.model.smoke:
        return "model.smoke is true (random weights)"
    if results.source == "demo":
        return "source is 'demo'"
    return None


def partial_subtasks(results: Results) -> dict[str, str]:
    """Subtasks scored on fewer items than Table 9 lists, with "n of N" for each."""
    out = {}
    for name, sub in results.subtasks.items():
        known = SUBTASK_BY_NAME.get(name)
        if known is not None and known.paper_n is not None and sub.n < known.paper_n:
            out[name] = f"{name}: n={sub.n} of {known.paper_n} (Table 9)"
    return out


def truncated_subtasks(results: Results) -> dict[str, str]:
    """Subtasks in which `--truncate-prompts` cut some item's text, with how many items."""
    extra = results.run_card.extra if results.run_card is not None else {}
    prompts = extra.get("prompts") if isinstance(extra, dict) else None
    cuts = prompts.get("truncated") if isinstance(prompts, dict) else None
    out = {}
    for task, items in (cuts or {}).items() if isinstance(cuts, dict) else ():
        for name in subtasks_of(str(task)):
            if items and name in results.subtasks:
                out[name] = f"{name}: {len(items)} item(s) with text cut to fit the context"
    return out


def assess(
    results: Results,
    submission_status: str | None,
    official: OfficialData,
    *,
    in_paper_folder: bool = False,
) -> Provenance:
    """The provenance of one file. `submission_status` is its review status when it lies in a
    submission folder (None elsewhere); `in_paper_folder` says it lies under `<results>/paper/`,
    the only place a `source: paper` claim is believed."""
    synthetic = is_synthetic(results)
    if synthetic:
        return Provenance(DEMO, reasons=(synthetic,))
    flags: list[str] = []
    reasons: list[str] = []
    if submission_status is not None:
        origin = ACCEPTED if submission_status == "accepted" else PENDING
    elif results.source == "paper" and not in_paper_folder:
        origin = PENDING
        reasons.append(f"claims source 'paper' outside results/{PAPER_DIR}/")
    elif results.run_card is None and results.source == "paper":
        return Provenance(PAPER)
    else:
        origin = PENDING if results.source == "submitted" else REPRODUCED
    if results.kind != "run" or results.run_card is None:
        # An analysis file: its inputs carry the data provenance.
        return Provenance(origin, reasons=tuple(reasons))
    sha = results.run_card.data_sha256
    if sha not in official.hashes:
        flags.append(UNVERIFIED_DATA)
        where = official.path or OFFICIAL_DATA_FILE
        reasons.append(f"data_sha256 {sha or '(none recorded)'} is not listed in {where}")
    partial = partial_subtasks(results)
    if partial:
        flags.append(PARTIAL)
        reasons.extend(partial.values())
    truncated = truncated_subtasks(results)
    if truncated:
        flags.append(TRUNCATED)
        reasons.extend(truncated.values())
    return Provenance(
        origin, tuple(flags), frozenset(partial) | frozenset(truncated), tuple(reasons)
    )
