"""MIMIC-CXR(-JPG): labels, views, splits and free-text reports.

Official files (each may also be gzipped, `.csv.gz`):
- `mimic-cxr-2.0.0-chexpert.csv`: subject_id, study_id, the 14 CheXpert observations
  (1.0 / 0.0 / -1.0 / blank);
- `mimic-cxr-2.0.0-metadata.csv`: dicom_id, subject_id, study_id, ViewPosition, ...;
- `mimic-cxr-2.0.0-split.csv`: dicom_id, study_id, subject_id, split (train/validate/test);
- images `files/p10/p10000032/s50414267/<dicom_id>.jpg`;
- reports `files/p10/p10000032/s50414267.txt` (from mimic-cxr-reports.zip) with
  "FINDINGS:" and "IMPRESSION:" sections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import (
    CHEXPERT_LABELS,
    DISEASES,
    InstanceFactory,
    MetadataError,
    read_csv,
)
from chexagent.instruct.schema import Instance, Split

NAME = "MIMIC-CXR"
VIEWS = ("AP", "PA", "LATERAL", "LL")
_SPLITS: dict[str, Split] = {"train": "train", "validate": "val", "test": "test"}
_SECTION = re.compile(r"^\s*([A-Z][A-Z /]+):", re.MULTILINE)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (root / name).is_file():
            return root / name
    return root / f"{stem}.csv"


def report_sections(text: str) -> dict[str, str]:
    """Upper-case section headers ("FINDINGS:", "IMPRESSION:") -> whitespace-collapsed text."""
    marks = list(_SECTION.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = " ".join(text[m.end() : end].split())
        if body:
            out[m.group(1).strip().lower()] = body
    return out


def study_dir(root: Path, subject: int, study: int) -> Path:
    return root / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}"


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    labels = read_csv(
        _find(root, "mimic-cxr-2.0.0-chexpert"), NAME, ("subject_id", "study_id", *CHEXPERT_LABELS)
    )
    meta = read_csv(
        _find(root, "mimic-cxr-2.0.0-metadata"),
        NAME,
        ("dicom_id", "subject_id", "study_id", "ViewPosition"),
    )
    split = read_csv(
        _find(root, "mimic-cxr-2.0.0-split"), NAME, ("dicom_id", "study_id", "subject_id", "split")
    )
    images = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="inner")
    unknown = set(images["split"]) - set(_SPLITS)
    if unknown:
        raise MetadataError(f"{NAME}: unknown split values {sorted(unknown)} in split.csv")
    label_by_study = {
        int(k): v
        for k, v in labels.drop_duplicates("study_id")
        .set_index("study_id")
        .to_dict("index")
        .items()
    }
    for study_id, group in images.groupby("study_id", sort=True):
        first = group.iloc[0]
        subject, sp = int(first.subject_id), _SPLITS[first.split]
        folder = study_dir(root, subject, int(study_id))
        common = {"patient_id": f"p{subject}", "study_id": f"s{study_id}"}
        frontal = []
        for row in group.itertuples(index=False):
            path = str(folder / f"{row.dicom_id}.jpg")
            view = str(row.ViewPosition).upper()
            if view in VIEWS:
                distractors = [v for v in VIEWS if v != view]
                yield factory.multiple_choice(
                    "ViewClassification",
                    "view",
                    row.dicom_id,
                    "view",
                    sp,
                    [path],
                    view,
                    distractors,
                    **common,
                )
            if view in ("AP", "PA"):
                frontal.append(path)
        study_images = frontal[:1] or [str(folder / f"{group.iloc[0].dicom_id}.jpg")]
        values = label_by_study.get(int(study_id))
        if values is not None:
            positives = [d for d in DISEASES if values[d] == 1.0]
            negatives = [d for d in DISEASES if values[d] == 0.0]
            yield from factory.disease_instances(
                "ImageClassification",
                f"s{study_id}",
                sp,
                study_images,
                positives,
                negatives,
                **common,
            )
        report = folder.with_suffix(".txt")
        if report.is_file():
            sections = report_sections(report.read_text(encoding="utf-8", errors="replace"))
            findings, impression = sections.get("findings"), sections.get("impression")
            indication = sections.get("indication", "")
            rec_id = f"s{study_id}"
            if findings:
                yield factory.free_text(
                    "FindingsGeneration",
                    "findings_generation",
                    rec_id,
                    "findings",
                    sp,
                    frontal[:2] or study_images,
                    findings,
                    indication=indication,
                    **common,
                )
            if impression:
                yield factory.free_text(
                    "ImpressionGeneration",
                    "impression_generation",
                    rec_id,
                    "impression",
                    sp,
                    study_images,
                    impression,
                    **common,
                )
            if findings and impression:
                yield factory.free_text(
                    "FindingsSummarization",
                    "findings_summarization",
                    rec_id,
                    "summary",
                    sp,
                    [],
                    impression,
                    findings=findings,
                    **common,
                )
