"""What a phantom study IS: patient demographics and the findings its images show.

Images, labels, questions and report text are all derived from these attributes, so a model
trained on phantom data can only learn what the pixels actually carry, and every label in
data.json can be checked against the attribute it came from (truth.jsonl).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from harness.errors import UserError

SIDES = ("left", "right")
SEXES = ("female", "male")
RACES = ("Asian", "Black", "White")
RACE_WEIGHTS = (0.25, 0.25, 0.5)
AGE_GROUPS = ("0-65", "65+")

# The disease vocabulary used in options, in a fixed (canonical) order. Lower case as in the
# paper's Figure 7 ("pleural effusion", "no finding").
NO_FINDING = "no finding"
DISEASES = (
    "cardiomegaly",
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "pneumonia",
    "edema",
    "atelectasis",
    "lung lesion",
    "support devices",
)
DEVICE_KINDS = ("endotracheal tube", "central venous catheter", "pacemaker")
# CTR ranges keep a margin around 0.5 for ordinary images; "hard" images move towards 0.5.
CTR_NORMAL = (0.38, 0.47)
CTR_ENLARGED = (0.53, 0.66)
CTR_MILD = (0.52, 0.555)
CTR_SEVERE = (0.62, 0.68)


def age_group(age: int) -> str:
    return "0-65" if age < 65 else "65+"


# `chexbench demo`'s injected fairness gap: Black patients' films are made harder.
DEMO_DISPARITY = "race=Black:0.8"


class DisparityError(UserError, ValueError):
    """A disparity spec naming no known attribute, group or strength: the user's `--disparity`
    (so one line on the command line), and still a ValueError to library callers."""


@dataclass(frozen=True)
class Disparity:
    """One subgroup's images are made harder to read (the injected fairness gap).

    strength 0 changes nothing; 1 gives much lower contrast, heavy noise and overlying soft
    tissue, and pulls the cardiothoracic ratio to within ~1% of the 0.5 threshold.
    """

    attribute: str  # "sex" | "race" | "age"
    group: str  # e.g. "Black", "female", "65+"
    strength: float = 0.6

    def __post_init__(self) -> None:
        valid = {"sex": SEXES, "race": RACES, "age": AGE_GROUPS}
        if self.attribute not in valid:
            raise DisparityError(
                f"--disparity: the attribute must be one of {sorted(valid)}, got {self.attribute!r}"
            )
        if self.group not in valid[self.attribute]:
            raise DisparityError(
                f"--disparity: the group for {self.attribute} must be one of "
                f"{valid[self.attribute]}, got {self.group!r}"
            )
        if not 0.0 <= self.strength <= 1.0:
            raise DisparityError(
                f"--disparity: the strength must be in [0, 1], got {self.strength}"
            )

    @classmethod
    def parse(cls, spec: str) -> Disparity:
        """'race=Black:0.6' (strength defaults to 0.6 when ':S' is left out)."""
        m = re.fullmatch(r"\s*(\w+)\s*=\s*([\w+-]+)\s*(?::\s*([0-9.]+))?\s*", spec)
        if not m:
            raise DisparityError(
                f"--disparity {spec!r}: expected ATTRIBUTE=GROUP[:STRENGTH], e.g. race=Black:0.6"
            )
        try:
            strength = float(m.group(3)) if m.group(3) else 0.6
        except ValueError:  # "0.6.1" matches the pattern
            raise DisparityError(f"--disparity {spec!r}: the strength is not a number") from None
        return cls(m.group(1), m.group(2), strength)

    def applies_to(self, patient: Patient) -> bool:
        value = {"sex": patient.sex, "race": patient.race, "age": age_group(patient.age)}[
            self.attribute
        ]
        return value == self.group and self.strength > 0


@dataclass(frozen=True)
class Patient:
    patient_id: str
    sex: str
    race: str
    age: int


def sample_demographics(rng: np.random.Generator) -> tuple[str, str, int]:
    """Independent of every finding, so without a disparity no subgroup differs."""
    sex = SEXES[int(rng.integers(2))]
    race = RACES[int(np.searchsorted(np.cumsum(RACE_WEIGHTS), rng.random(), side="right"))]
    age = int(rng.integers(18, 91))
    return sex, race, age


@dataclass
class Findings:
    """Everything drawn into a study's images. Absent findings are None / empty."""

    ctr: float
    effusion: str | None = None  # left | right | bilateral
    effusion_size: str | None = None  # small | moderate | large
    pneumothorax: str | None = None  # left | right
    pneumothorax_size: str | None = None  # small | large
    consolidation: str | None = None  # left | right
    consolidation_lobe: str | None = None  # upper | lower
    pneumonia: str | None = None  # left | right
    edema: str | None = None  # mild | severe
    atelectasis: str | None = None  # left | right
    lesion: str | None = None  # left | right
    lesion_zone: str | None = None  # upper | middle | lower
    elevated_diaphragm: str | None = None  # left | right (not a CheXpert label)
    devices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cardiomegaly(self) -> bool:
        return self.ctr > 0.5

    @property
    def heart_size(self) -> str:
        if not self.cardiomegaly:
            return "normal"
        return "mild" if self.ctr < 0.56 else ("moderate" if self.ctr < 0.62 else "severe")

    def labels(self) -> list[str]:
        """The CheXpert-style disease labels in canonical order ([] means 'no finding')."""
        present = {
            "cardiomegaly": self.cardiomegaly,
            "pleural effusion": self.effusion is not None,
            "pneumothorax": self.pneumothorax is not None,
            "consolidation": self.consolidation is not None,
            "pneumonia": self.pneumonia is not None,
            "edema": self.edema is not None,
            "atelectasis": self.atelectasis is not None,
            "lung lesion": self.lesion is not None,
            "support devices": bool(self.devices),
        }
        return [d for d in DISEASES if present[d]]

    def truth_list(self) -> list[str]:
        labels = self.labels()
        if self.elevated_diaphragm:
            labels.append("elevated hemidiaphragm")
        return labels or [NO_FINDING]

    def details(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return round(float(rng.uniform(*lo_hi)), 4)


def _side(rng: np.random.Generator) -> str:
    return SIDES[int(rng.integers(2))]


def make_findings(
    rng: np.random.Generator,
    labels: set[str] | frozenset[str],
    *,
    hard: float = 0.0,
    **overrides: object,
) -> Findings:
    """Findings showing exactly `labels`, with random sides/sizes unless overridden.

    `hard` in [0, 1] pulls the cardiothoracic ratio towards 0.5 without crossing it, so the
    label stays true while the image becomes ambiguous.
    """
    unknown = set(labels) - set(DISEASES)
    if unknown:
        raise ValueError(f"unknown phantom labels {sorted(unknown)}")
    heart = overrides.pop("heart", None)
    if heart == "mild":
        ctr = _uniform(rng, CTR_MILD)
    elif heart == "severe":
        ctr = _uniform(rng, CTR_SEVERE)
    else:
        ctr = _uniform(rng, CTR_ENLARGED if "cardiomegaly" in labels else CTR_NORMAL)
    if hard > 0:
        ctr = 0.5 + (ctr - 0.5) * (1.0 - 0.85 * hard)
        ctr = round(max(ctr, 0.505) if ctr > 0.5 else min(ctr, 0.495), 4)
    f = Findings(ctr=ctr)
    if "pleural effusion" in labels:
        f.effusion = ["left", "right", "bilateral"][int(rng.integers(3))]
        f.effusion_size = ["small", "moderate", "large"][int(rng.integers(3))]
    if "pneumothorax" in labels:
        f.pneumothorax = _side(rng)
        f.pneumothorax_size = ["small", "large"][int(rng.integers(2))]
    if "consolidation" in labels:
        f.consolidation = _side(rng)
        f.consolidation_lobe = ["upper", "lower"][int(rng.integers(2))]
    if "pneumonia" in labels:
        f.pneumonia = _side(rng)
    if "edema" in labels:
        f.edema = ["mild", "severe"][int(rng.integers(2))]
    if "atelectasis" in labels:
        f.atelectasis = _side(rng)
    if "lung lesion" in labels:
        f.lesion = _side(rng)
        f.lesion_zone = ["upper", "middle", "lower"][int(rng.integers(3))]
    if "support devices" in labels:
        n = int(rng.integers(1, 3))
        picks = rng.choice(len(DEVICE_KINDS), size=n, replace=False)
        f.devices = tuple(DEVICE_KINDS[i] for i in sorted(int(p) for p in picks))
    for key, value in overrides.items():
        if not hasattr(f, key):
            raise ValueError(f"unknown finding attribute {key!r}")
        setattr(f, key, value)
    return f


# Rough prevalences for studies whose labels are sampled rather than chosen (report tasks).
PREVALENCE = {
    "cardiomegaly": 0.3,
    "pleural effusion": 0.3,
    "pneumothorax": 0.1,
    "consolidation": 0.12,
    "pneumonia": 0.1,
    "edema": 0.15,
    "atelectasis": 0.2,
    "lung lesion": 0.08,
    "support devices": 0.25,
}


def sample_labels(rng: np.random.Generator) -> set[str]:
    draws = rng.random(len(DISEASES))
    return {d for d, u in zip(DISEASES, draws, strict=True) if u < PREVALENCE[d]}
