"""Reading a demographics CSV and joining it to scored items, without ever guessing.

Real demographic files disagree on spelling (CheXpert's demo sheet says PATIENT / GENDER /
PRIMARY_RACE / AGE_AT_CXR, with races like "White, non-Hispanic"), so columns and values are
normalised here, once. A value we cannot read is "unknown" and is counted, never imputed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.fairness.protocol import PAPER_AGE_BINS

UNKNOWN = None
ID_COLUMNS = ("patient_id", "study_id", "subject_id", "PATIENT", "image_path", "path")
COLUMN_ALIASES = {
    "sex": ("sex", "gender", "GENDER", "Sex"),
    "race": ("race", "PRIMARY_RACE", "primary_race", "Race"),
    "age": ("age", "AGE_AT_CXR", "age_at_cxr", "Age", "anchor_age"),
}
_UNKNOWN_WORDS = {
    "",
    "unknown",
    "unk",
    "u",
    "nan",
    "none",
    "null",
    "na",
    "n/a",
    "patient refused",
    "refused",
    "declined",
    "not reported",
    "missing",
    "?",
}


@dataclass(frozen=True)
class Demographics:
    """Normalised demographics keyed by the CSV's id column."""

    path: Path
    id_column: str
    table: pd.DataFrame  # index: id (str); one column per attribute; None = unknown

    def attribute(self, name: str) -> pd.Series:
        return self.table[name]


def normalise_sex(raw: object) -> str | None:
    text = _clean(raw)
    if text is None:
        return UNKNOWN
    return {
        "f": "female",
        "female": "female",
        "woman": "female",
        "m": "male",
        "male": "male",
        "man": "male",
    }.get(text.lower(), "other")


def normalise_race(raw: object) -> str | None:
    """Map free-text race to the paper's groups (Asian, Black, White); the rest is "Other"."""
    text = _clean(raw)
    if text is None:
        return UNKNOWN
    low = text.lower()
    if "white" in low or "caucasian" in low:
        return "White"
    if "black" in low or "african" in low:
        return "Black"
    if re.match(r"^asian\b", low):
        return "Asian"
    return "Other"


def age_years(raw: object) -> float | None:
    """Age in years; "90+" style capped ages read as their bound, anything else is unknown."""
    text = _clean(raw)
    if text is None:
        return UNKNOWN
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*\+?\s*", text)
    if not m:
        return UNKNOWN
    value = float(m.group(1))
    return value if 0 <= value < 130 else UNKNOWN


def bin_label(edges: Sequence[float], index: int) -> str:
    lo = edges[index]
    fmt = lambda x: f"{x:g}"  # noqa: E731
    if index == len(edges) - 1:
        return f"{fmt(lo)}+"
    return f"{fmt(lo)}-{fmt(edges[index + 1])}"


def bin_ages(ages: Iterable[float | None], edges: Sequence[float]) -> list[str | None]:
    """Half-open bins [e_i, e_i+1), the last open-ended: with (0, 65) that is 0-65 and 65+."""
    edges = sorted(float(e) for e in edges)
    out: list[str | None] = []
    for age in ages:
        if age is None or (isinstance(age, float) and np.isnan(age)) or age < edges[0]:
            out.append(UNKNOWN)
            continue
        idx = int(np.searchsorted(edges, age, side="right")) - 1
        out.append(bin_label(edges, idx))
    return out


def load_demographics(
    path: str | Path,
    attributes: Sequence[str],
    id_column: str | None = None,
    bins: dict[str, Sequence[float]] | None = None,
) -> Demographics:
    """Read the CSV, resolve column aliases, normalise values, and bin numeric attributes.

    `sex`, `race` and `age` get the paper's normalisation (age binned by `bins["age"]`,
    default 0-65 / 65+); any other attribute is used verbatim (stripped), binned when `bins`
    names it. Conflicting rows for one id are an error, not a coin toss.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: demographics CSV not found. Expected columns: patient_id (or study_id / "
            "image_path), sex, race, age; see docs/statistics.md. For CheXpert, the demographics "
            "come from the CheXpert demographic release (CHEXPERT DEMO), exported as CSV."
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: cannot read as CSV ({exc})") from exc
    id_col = id_column or next((c for c in ID_COLUMNS if c in raw.columns), None)
    if id_col is None or id_col not in raw.columns:
        raise UserError(
            f"{path}: no id column (looked for {id_column or ID_COLUMNS}); "
            f"columns are {list(raw.columns)}. Pass --id-column."
        )
    bins = dict(bins or {})
    if "age" in attributes:
        bins.setdefault("age", PAPER_AGE_BINS)
    table = pd.DataFrame(index=raw[id_col].str.strip().rename("id"))
    for attr in attributes:
        column = find_column(raw.columns, attr)
        if column is None:
            raise UserError(
                f"{path}: no column for attribute {attr!r} (columns are {list(raw.columns)})"
            )
        values = raw[column].tolist()
        if attr in bins:
            table[attr] = bin_ages((age_years(v) for v in values), bins[attr])
        elif attr == "sex":
            table[attr] = [normalise_sex(v) for v in values]
        elif attr == "race":
            table[attr] = [normalise_race(v) for v in values]
        else:
            table[attr] = [_clean(v) for v in values]
    table = table[table.index != ""]
    _check_conflicts(path, table)
    table = table[~table.index.duplicated(keep="first")]
    return Demographics(path=path, id_column=id_col, table=table)


def join_keys(image_paths: Sequence[str], cluster_id: str | None) -> list[str]:
    """Keys under which a scored item may appear in a demographics file, most specific first.

    Whole paths, then "patientX/studyY"-style segment pairs (study ids repeat across patients),
    then the item's cluster id, then single path segments (patient ids).
    """
    keys: list[str] = []
    segment_lists = [[s for s in re.split(r"[\\/]", p) if s] for p in image_paths]
    keys.extend(image_paths)
    for segs in segment_lists:
        keys.extend(f"{a}/{b}" for a, b in zip(segs, segs[1:], strict=False))
    if cluster_id:
        keys.append(cluster_id)
    for segs in segment_lists:
        keys.extend(segs)
        keys.extend(Path(s).stem for s in segs if Path(s).suffix)
    return list(dict.fromkeys(keys))


def match_id(
    demographics: Demographics, image_paths: Sequence[str], cluster_id: str | None
) -> str | None:
    index = demographics.table.index
    for key in join_keys(image_paths, cluster_id):
        if key in index:
            return key
    return None


def find_column(columns: Iterable[str], attr: str) -> str | None:
    """The column holding `attr` under any of its known spellings (COLUMN_ALIASES), or None."""
    columns = list(columns)
    for candidate in (attr, *COLUMN_ALIASES.get(attr, ())):
        if candidate in columns:
            return candidate
    lower = {c.lower(): c for c in columns}
    return lower.get(attr.lower())


def _clean(raw: object) -> str | None:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return UNKNOWN
    text = str(raw).strip()
    return UNKNOWN if text.lower() in _UNKNOWN_WORDS else text


def _check_conflicts(path: Path, table: pd.DataFrame) -> None:
    dup = table[table.index.duplicated(keep=False)]
    if dup.empty:
        return
    for key, rows in dup.groupby(level=0):
        if len(rows.astype(str).drop_duplicates()) > 1:
            raise UserError(
                f"{path}: id {key!r} has conflicting demographics in several rows: "
                f"{rows.to_dict('records')}"
            )
