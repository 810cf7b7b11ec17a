"""Creating phantom studies: a patient, findings, images on disk, and their truth records."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness.phantom.attributes import (
    Disparity,
    Findings,
    Patient,
    make_findings,
    sample_demographics,
)
from harness.phantom.paths import PathNamer
from harness.phantom.render import render

DATASET_SOURCES = {  # dataset slug -> data_source as written in data.json
    "mimic_cxr": "MIMIC-CXR",
    "chexpert": "CheXpert",
    "siim": "SIIM",
    "rsna": "RSNA",
    "openi": "OpenI",
    "rad_restruct": "Rad-Restruct",
    "slake": "SLAKE",
}


@dataclass
class Study:
    dataset: str
    patient: Patient
    study_id: str
    findings: Findings
    hard: bool
    views: tuple[str, ...]
    image_paths: tuple[str, ...]

    @property
    def data_source(self) -> str:
        return DATASET_SOURCES[self.dataset]


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG without timestamps or other metadata, so the same pixels give the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class StudyFactory:
    """Makes studies, renders and saves their images, and keeps the truth and demographics."""

    root: Path  # images are written under root / <relative path>
    split: str
    seed: int
    image_size: int
    disparity: Disparity | None
    namer: PathNamer = field(init=False)
    truth: list[dict] = field(default_factory=list)
    patients: dict[str, Patient] = field(default_factory=dict)
    _images: int = 0
    _dirs: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.namer = PathNamer(self.split, self.seed)

    def image_rng(self) -> np.random.Generator:
        """One stream per image, so an image does not depend on how others were drawn."""
        self._images += 1
        return np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), self._images])

    def new(
        self,
        dataset: str,
        labels: set[str] | frozenset[str],
        views: tuple[str, ...],
        rng: np.random.Generator,
        **overrides: object,
    ) -> Study:
        paths = self.namer.study(dataset, list(views))
        sex, race, age = sample_demographics(rng)
        patient = Patient(paths.patient_id, sex, race, age)
        hard = self.disparity is not None and self.disparity.applies_to(patient)
        strength = self.disparity.strength if (hard and self.disparity) else 0.0
        findings = make_findings(rng, labels, hard=strength, **overrides)
        study = Study(
            dataset, patient, paths.study_id, findings, hard, tuple(views), paths.image_paths
        )
        self.patients[patient.patient_id] = patient
        for view, rel in zip(views, paths.image_paths, strict=True):
            pixels = render(
                findings,
                view,
                self.image_size,
                female=sex == "female",
                hard=strength,
                rng=self.image_rng(),
            )
            out = self.root / rel
            if out.parent not in self._dirs:
                out.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(out.parent)
            out.write_bytes(png_bytes(pixels))
            self.truth.append(
                {
                    "image_path": rel,
                    "dataset": dataset,
                    "patient_id": patient.patient_id,
                    "study_id": study.study_id,
                    "view": view,
                    "findings": findings.truth_list(),
                    "ctr": findings.ctr,
                    "sex": sex,
                    "race": race,
                    "age": age,
                    "hard": hard,
                    "split": self.split,
                    "details": findings.details(),
                }
            )
        return study
