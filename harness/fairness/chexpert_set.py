"""The paper's section 7 fairness set, built from the real CheXpert test labels + demographics.

The paper tests cardiomegaly ("Does this chest X-ray contain cardiomegaly?", Yes/No) on
frontal CheXpert test films of subjects self-reporting as Asian, Black or White, labelled
"Cardiomegaly" or "No Finding" (159 subjects). The set itself was never released, so this
module rebuilds it from the two files a user can download, and writes it in the CheXbench
`data.json` format so `chexbench run` and `chexbench fairness` take it as they are.

Label files (all real layouts, told apart by their columns):

* CheXlocalize's `CheXpert/test_labels.csv`: `Path` (one row per image, e.g.
  `test/patient64741/study1/view1_frontal.jpg`) and the 14 observations, 1/0; no Sex, Age or
  view columns.
* CheXpert's `valid.csv` / `train.csv` layout: `Path`, Sex, Age, Frontal/Lateral, AP/PA, then
  the 14 observations coded 1.0 / 0.0 / -1.0 (uncertain) / blank (not mentioned).
* `groundtruth.csv` of rajpurkarlab/cheXpert-test-set-labels: `Study` (one row per study,
  `CheXpert-v1.0/test/patient64741/study1`) and the 14 observations; it names no image files,
  so the images are listed from `image_dir`.

Choices (each counted in `excluded`, never silent):

* Frontal only: the view comes from the file name (`viewK_frontal` / `viewK_lateral`, which
  every CheXpert release uses); a `Frontal/Lateral` column that disagrees is an error. A study
  with several frontal films contributes its lowest-numbered one.
* Labels must be certain: Cardiomegaly = 1 is "Yes"; "No" is No Finding = 1 with Cardiomegaly
  0 or blank (the paper's negatives; `negatives="no-cardiomegaly"` takes any Cardiomegaly = 0
  instead). Uncertain (-1) labels, studies with neither label, and studies marked both
  No Finding and Cardiomegaly are left out: a yes/no answer key cannot hold a maybe.
* One study per subject: the lowest study number among the subject's usable studies (usable =
  a frontal film and a certain label), so a repeat visit never counts twice.
* Demographics (`CHEXPERT DEMO.xlsx` or a CSV export of it: PATIENT, GENDER, AGE_AT_CXR,
  PRIMARY_RACE, ETHNICITY) are joined on the patient folder (`patient64741`); race is
  normalised by `demographics.normalise_race`, and only Asian, Black and White subjects are
  kept. Unknown sex or age keeps the subject (the analysis counts them as unknown).

Row numbers in errors count the header as row 1, as a spreadsheet and a CSV line count do.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.fairness.demographics import (
    age_years,
    bin_ages,
    find_column,
    normalise_race,
    normalise_sex,
)
from harness.fairness.protocol import (
    PAPER_AGE_BINS,
    PAPER_GROUPS,
    PAPER_POSITIVE,
    PAPER_QUESTION,
)
from harness.io import atomic_write_json, atomic_write_text
from harness.taxonomy import subtask_for

SUBTASK = subtask_for("binary_disease_classification", "chexpert")
DATA_KEY = SUBTASK.task.data_keys[0]  # "Binary Disease Classification"
DATA_SOURCE = SUBTASK.dataset.data_sources[0]  # "CheXpert"
NEGATIVE = "No"
OPTIONS = (PAPER_POSITIVE, NEGATIVE)
DEFAULT_IMAGE_PREFIX = "data/chexpert-public"  # where the official data.json puts CheXpert
NEGATIVE_RULES = ("no-finding", "no-cardiomegaly")
DEMOGRAPHICS_COLUMNS = ("patient_id", "sex", "race", "age", "age_group")
_PATIENT_COLUMNS = ("PATIENT", "patient_id")
_SPLIT = r"(?:(?P<split>[^/]+)/)?"
_IMAGE = re.compile(
    _SPLIT + r"(?P<patient>patient\d+)/(?P<study>study\d+)/"
    r"(?P<file>view(?P<view>\d+)_(?P<kind>frontal|lateral)\.[A-Za-z]+)$",
    re.IGNORECASE,
)
_STUDY = re.compile(_SPLIT + r"(?P<patient>patient\d+)/(?P<study>study\d+)/?$", re.IGNORECASE)


@dataclass(frozen=True)
class Image:
    """One labelled image row (or, for per-study labels, one image found on disk)."""

    row: int
    split: str
    patient: str
    study: str
    file: str
    view: int
    frontal: bool
    cardiomegaly: float | None
    no_finding: float | None

    @property
    def study_number(self) -> int:
        return int(self.study[len("study") :])


@dataclass(frozen=True)
class Subject:
    row: int
    sex: str | None
    race: str | None
    age: float | None


@dataclass
class FairnessSet:
    """The selected items (data.json samples) and the demographics of their subjects."""

    items: list[dict[str, Any]]
    demographics: list[dict[str, Any]]  # DEMOGRAPHICS_COLUMNS per item's subject; None unknown
    excluded: Counter = field(default_factory=Counter)

    @property
    def data(self) -> dict[str, list[dict[str, Any]]]:
        return {DATA_KEY: self.items}


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A CSV or .xlsx sheet as strings (blank cells are ""), header names stripped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    excel = path.suffix.lower() in (".xlsx", ".xlsm")
    if excel and importlib.util.find_spec("openpyxl") is None:  # pandas' optional .xlsx reader
        raise UserError(
            f"{path}: reading .xlsx needs the openpyxl package, which is not installed; "
            "export the sheet to CSV and pass that instead, or `pip install openpyxl`"
        )
    try:
        if excel:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        ValueError,
        zipfile.BadZipFile,
    ) as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.fillna("")


def read_labels(path: str | Path, image_dir: str | Path | None = None) -> list[Image]:
    """Every labelled image of a CheXpert labels file, in file order."""
    path = Path(path)
    frame = read_table(path, "CheXpert labels file")
    missing = [c for c in ("Cardiomegaly", "No Finding") if c not in frame.columns]
    key = "Path" if "Path" in frame.columns else "Study" if "Study" in frame.columns else None
    if missing or key is None:
        raise UserError(
            f"{path}: not a CheXpert labels file: needs a Path or Study column and "
            f"'Cardiomegaly' and 'No Finding'; columns are {list(frame.columns)}"
        )
    if key == "Study" and image_dir is None:
        raise UserError(
            f"{path}: per-study labels (a Study column) name no image files; pass --image-dir "
            "with the CheXpert test folder (patientNNNNN/studyN/viewK_frontal.jpg), or use "
            "CheXlocalize's CheXpert/test_labels.csv, which has a Path per image"
        )
    images: list[Image] = []
    for offset, rec in enumerate(frame.to_dict("records")):
        row = offset + 2
        where = f"{path}: row {row}"
        cardio = _label(rec["Cardiomegaly"], where, "Cardiomegaly")
        no_finding = _label(rec["No Finding"], where, "No Finding")
        value = rec[key].strip().replace("\\", "/")
        pattern = _IMAGE if key == "Path" else _STUDY
        m = pattern.search(value)
        if m is None:
            shape = "…/patientN/studyN/viewK_frontal.jpg" if key == "Path" else "…/patientN/studyN"
            raise UserError(f"{where}: {key} {value!r} is not a CheXpert {shape}")
        split = m.group("split") or "test"
        patient, study = m.group("patient"), m.group("study")
        if key == "Path":
            frontal = m.group("kind").lower() == "frontal"
            _check_view_column(rec, frontal, where)
            files = [(m.group("file"), int(m.group("view")), frontal)]
        else:
            files = _files_on_disk(Path(image_dir), patient, study)
        images.extend(
            Image(row, split, patient, study, name, view, is_frontal, cardio, no_finding)
            for name, view, is_frontal in files
        )
        if not files:
            images.append(Image(row, split, patient, study, "", 0, False, cardio, no_finding))
    return images


def read_subjects(path: str | Path) -> dict[str, Subject]:
    """The demographics file (CHEXPERT DEMO layout or our CSV), normalised, keyed by patient."""
    path = Path(path)
    frame = read_table(path, "demographics file")
    id_col = next((c for c in _PATIENT_COLUMNS if c in frame.columns), None)
    columns = {a: find_column(frame.columns, a) for a in ("sex", "race", "age")}
    if id_col is None or columns["race"] is None:
        raise UserError(
            f"{path}: not a CheXpert demographics file: needs PATIENT and PRIMARY_RACE (also "
            f"read: GENDER, AGE_AT_CXR); columns are {list(frame.columns)}"
        )
    subjects: dict[str, Subject] = {}
    for offset, rec in enumerate(frame.to_dict("records")):
        key = rec[id_col].strip()
        if not key:
            continue
        row = offset + 2
        subject = Subject(
            row=row,
            sex=normalise_sex(rec[columns["sex"]]) if columns["sex"] else None,
            race=normalise_race(rec[columns["race"]]),
            age=age_years(rec[columns["age"]]) if columns["age"] else None,
        )
        earlier = subjects.get(key)
        if earlier is not None and (earlier.sex, earlier.race, earlier.age) != (
            subject.sex,
            subject.race,
            subject.age,
        ):
            raise UserError(
                f"{path}: row {row}: {id_col} {key!r} disagrees with row {earlier.row} "
                "(sex, race or age differ)"
            )
        subjects.setdefault(key, subject)
    return subjects


def study_answer(
    cardiomegaly: float | None, no_finding: float | None, negatives: str = "no-finding"
) -> tuple[str | None, str | None]:
    """(answer, None) for a usable study, else (None, why it is left out)."""
    if cardiomegaly == 1.0 and no_finding == 1.0:
        return None, "studies marked both No Finding and Cardiomegaly"
    if cardiomegaly == 1.0:
        return PAPER_POSITIVE, None
    if cardiomegaly == -1.0:
        return None, "studies with uncertain Cardiomegaly (-1)"
    if negatives == "no-cardiomegaly":
        if cardiomegaly == 0.0 or no_finding == 1.0:
            return NEGATIVE, None
        return None, "studies with Cardiomegaly not mentioned (blank)"
    if no_finding == 1.0:
        return NEGATIVE, None
    if no_finding == -1.0:
        return None, "studies with uncertain No Finding (-1)"
    return None, "studies labelled neither No Finding nor Cardiomegaly"


def build_fairness_set(
    labels: str | Path,
    demographics: str | Path,
    *,
    image_dir: str | Path | None = None,
    negatives: str = "no-finding",
    image_prefix: str = DEFAULT_IMAGE_PREFIX,
    races: Sequence[str] = PAPER_GROUPS["race"],
) -> FairnessSet:
    """Select the paper's items: one frontal film per subject, certain label, paper's races."""
    if negatives not in NEGATIVE_RULES:
        raise UserError(f"negatives must be one of {NEGATIVE_RULES}, got {negatives!r}")
    labels = Path(labels)
    images = read_labels(labels, image_dir)
    subjects = read_subjects(demographics)
    excluded: Counter = Counter()
    studies: dict[tuple[str, str], list[Image]] = defaultdict(list)
    for image in images:
        studies[(image.patient, image.study)].append(image)
    chosen: dict[str, tuple[Image, str]] = {}
    for (patient, _), members in sorted(studies.items(), key=lambda kv: _study_order(kv[1][0])):
        _check_same_labels(labels, members)
        excluded["lateral images"] += sum(1 for m in members if m.file and not m.frontal)
        frontal = sorted((m for m in members if m.frontal), key=lambda m: m.view)
        if not any(m.file for m in members):
            excluded["studies with no image files under --image-dir"] += 1
            continue
        if not frontal:
            excluded["studies without a frontal image"] += 1
            continue
        excluded["extra frontal images of a study (lowest view kept)"] += len(frontal) - 1
        answer, why = study_answer(frontal[0].cardiomegaly, frontal[0].no_finding, negatives)
        if why:
            excluded[why] += 1
        elif patient in chosen:
            excluded["later studies of a subject already in the set"] += 1
        else:
            chosen[patient] = (frontal[0], answer)
    items, rows = [], []
    for patient, (image, answer) in chosen.items():
        subject = subjects.get(patient)
        if subject is None:
            excluded["subjects without a demographics record"] += 1
            continue
        if subject.race not in races:
            reason = "unknown" if subject.race is None else subject.race
            excluded[f"subjects with race {reason} (not {'/'.join(races)})"] += 1
            continue
        path = f"{image_prefix.rstrip('/')}/{image.split}/{patient}/{image.study}/{image.file}"
        items.append(
            {
                "data_source": DATA_SOURCE,
                "image_path": path,
                "question": PAPER_QUESTION,
                "option_0": OPTIONS[0],
                "option_1": OPTIONS[1],
                "option_2": None,
                "option_3": None,
                "answer": OPTIONS.index(answer),
            }
        )
        (age_group,) = bin_ages([subject.age], PAPER_AGE_BINS)
        rows.append(
            {
                "patient_id": patient,
                "sex": subject.sex,
                "race": subject.race,
                "age": subject.age,
                "age_group": age_group,
            }
        )
    if not items:
        raise UserError(
            f"{labels}: no subject is left for the fairness set (left out: "
            f"{_nonzero(excluded) or 'nothing'}); check that the demographics file covers "
            "the test patients (patient64741-patient65240) and the labels' columns"
        )
    return FairnessSet(items, rows, Counter(_nonzero(excluded)))


def write_fairness_set(fs: FairnessSet, out: str | Path, demographics_out: str | Path) -> None:
    """data.json and the demographics CSV `chexbench fairness` reads, each written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, DEMOGRAPHICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in fs.demographics:
        age = row["age"]
        writer.writerow({**row, "age": None if age is None else f"{age:g}"})
    atomic_write_json(out, fs.data)
    atomic_write_text(demographics_out, buf.getvalue())


def _label(raw: str, where: str, column: str) -> float | None:
    text = str(raw).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value not in (1.0, 0.0, -1.0):
        raise UserError(f"{where}: {column} is {raw!r}; CheXpert labels are 1, 0, -1 or blank")
    return value


def _check_view_column(rec: dict[str, str], frontal: bool, where: str) -> None:
    said = rec.get("Frontal/Lateral", "").strip().lower()
    if said and said != ("frontal" if frontal else "lateral"):
        raise UserError(
            f"{where}: Frontal/Lateral says {rec['Frontal/Lateral']!r} but the file is "
            f"{rec['Path']!r}"
        )


def _files_on_disk(image_dir: Path, patient: str, study: str) -> list[tuple[str, int, bool]]:
    folder = image_dir / patient / study
    found = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = _IMAGE.search(f"{patient}/{study}/{entry.name}")
        if m and entry.is_file():
            found.append((entry.name, int(m.group("view")), m.group("kind").lower() == "frontal"))
    return found


def _check_same_labels(path: Path, members: list[Image]) -> None:
    """Study labels repeat on each image row; rows that disagree mean a damaged file."""
    first = members[0]
    for other in members[1:]:
        if (other.cardiomegaly, other.no_finding) != (first.cardiomegaly, first.no_finding):
            raise UserError(
                f"{path}: row {other.row}: {other.patient}/{other.study} has labels that "
                f"disagree with row {first.row} (Cardiomegaly / No Finding)"
            )


def _study_order(image: Image) -> tuple[int, int]:
    """Patients by number, then studies by number (study2 before study10)."""
    return int(image.patient[len("patient") :]), image.study_number


def _nonzero(counts: Counter) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}
