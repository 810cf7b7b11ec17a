"""RSNA Pneumonia Detection: `stage_2_train_labels.csv` (patientId, x, y, width, height,
Target; one row per box, a single row with Target 0 for negatives), images
`stage_2_train_images/<patientId>.dcm` (or a .png/.jpg conversion beside it).

The challenge's labelled data has no public test split, so patients are split 70/15/15 by a
stable hash (Table 6 reports a 18,678 / 4,003 / 4,003 split of the same kind).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import InstanceFactory, hash_split, read_csv
from chexagent.instruct.schema import Instance

NAME = "RSNA"
IMAGE_DIR = "stage_2_train_images"


def image_path(root: Path, patient: str) -> str:
    for ext in (".png", ".jpg", ".dcm"):
        candidate = root / IMAGE_DIR / f"{patient}{ext}"
        if candidate.exists():
            return str(candidate)
    return str(root / IMAGE_DIR / f"{patient}.dcm")


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    labels = read_csv(
        root / "stage_2_train_labels.csv",
        NAME,
        ("patientId", "x", "y", "width", "height", "Target"),
    )
    for patient, rows in labels.groupby("patientId", sort=True):
        positive = bool(rows["Target"].max() == 1)
        yield factory.binary(
            "ImageClassification",
            str(patient),
            hash_split(str(patient)),
            [image_path(root, str(patient))],
            "pneumonia",
            positive,
            patient_id=str(patient),
            study_id=str(patient),
        )
