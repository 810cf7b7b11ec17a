"""NIH ChestX-ray14: `Data_Entry_2017.csv` (Image Index, Finding Labels with "|" between
labels or "No Finding", Follow-up #, Patient ID, Patient Age, Patient Gender, View Position,
...), official `train_val_list.txt` / `test_list.txt`, images in `images/` or the release's
`images_001/images/` .. `images_012/images/` folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import InstanceFactory, read_csv, stable_fraction
from chexagent.instruct.schema import Instance

NAME = "ChestXray14"
LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)


def _image_index(root: Path) -> dict[str, Path]:
    found = {}
    for folder in [root / "images", *sorted(root.glob("images_*/images"))]:
        if folder.is_dir():
            found.update({p.name: p for p in folder.iterdir()})
    return found


def _names(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.is_file() else set()


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    entries = read_csv(
        root / "Data_Entry_2017.csv",
        NAME,
        (
            "Image Index",
            "Finding Labels",
            "Patient ID",
            "Patient Age",
            "Patient Gender",
            "View Position",
        ),
    )
    test = _names(root / "test_list.txt")
    located = _image_index(root)
    for rec in entries.to_dict("records"):
        name = str(rec["Image Index"])
        patient = str(rec["Patient ID"])
        if name in test:
            split = "test"
        else:  # the official train_val list has no fixed validation part: 1/8 by patient
            split = "val" if stable_fraction("cxr14-val", patient) < 0.125 else "train"
        labels = [x.strip() for x in str(rec["Finding Labels"]).split("|")]
        positives = [x.replace("_", " ") for x in labels if x in LABELS]
        negatives = [x.replace("_", " ") for x in LABELS if x not in labels]
        images = [str(located.get(name, root / "images" / name))]
        common = {
            "patient_id": patient,
            "study_id": f"{patient}/{rec.get('Follow-up #', '')}",
            "meta": {
                "sex": rec["Patient Gender"],
                "age": rec["Patient Age"],
                "view": rec["View Position"],
            },
        }
        yield from factory.disease_instances(
            "ImageClassification", name, split, images, positives, negatives, **common
        )
