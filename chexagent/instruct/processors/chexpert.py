"""CheXpert: `train.csv` / `valid.csv` (and the test set's `test_labels.csv` when present).

Columns: Path, Sex, Age, Frontal/Lateral, AP/PA, then the 14 observations coded 1.0 positive,
0.0 negative, -1.0 uncertain, blank unmentioned. Uncertain and blank labels are never used
as negatives. `Path` starts with the release folder ("CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg"); it is resolved against the folder that holds the CSVs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import (
    CHEXPERT_LABELS,
    DISEASES,
    InstanceFactory,
    read_csv,
)
from chexagent.instruct.schema import Instance

NAME = "CheXpert"
SPLIT_FILES = {"train": "train.csv", "val": "valid.csv", "test": "test_labels.csv"}
REQUIRED = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)


def resolve_image(root: Path, raw: str) -> str:
    parts = Path(raw).parts
    # drop the release folder when the CSVs sit inside it (the official layout)
    candidate = root.joinpath(*parts[1:]) if len(parts) > 1 else root / raw
    return str(candidate if candidate.exists() or not (root / raw).exists() else root / raw)


def view_of(frontal_lateral: str, ap_pa: object) -> str | None:
    if str(frontal_lateral).strip().lower() == "lateral":
        return "LATERAL"
    view = str(ap_pa).strip().upper()
    return view if view in {"AP", "PA"} else None


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    for split, filename in SPLIT_FILES.items():
        path = root / filename
        if split != "train" and not path.is_file():
            continue
        frame = read_csv(path, NAME, REQUIRED)
        for row in frame.itertuples(index=False):
            rec = dict(zip(frame.columns, row, strict=True))
            raw = str(rec["Path"])
            m = re.search(r"(patient\d+)/(study\d+)", raw)
            patient, study = (m.group(1), m.group(2)) if m else (raw, raw)
            images = [resolve_image(root, raw)]
            meta = {"sex": rec["Sex"], "age": rec["Age"]}
            common = {"patient_id": patient, "study_id": f"{patient}/{study}", "meta": meta}
            positives = [d for d in DISEASES if rec[d] == 1.0]
            negatives = [d for d in DISEASES if rec[d] == 0.0]
            if rec["No Finding"] == 1.0:
                negatives = [d for d in DISEASES if rec[d] != 1.0 and rec[d] != -1.0]
            yield from factory.disease_instances(
                "ImageClassification", raw, split, images, positives, negatives, **common
            )
            view = view_of(rec["Frontal/Lateral"], rec["AP/PA"])
            if view:
                distractors = [v for v in ("AP", "PA", "LATERAL") if v != view]
                yield factory.multiple_choice(
                    "ViewClassification",
                    "view",
                    raw,
                    "view",
                    split,
                    images,
                    view,
                    distractors,
                    **common,
                )
