"""Shared pieces of the dataset processors: deterministic per-record randomness, instance
factories for the common task formats, and clear errors for missing metadata files.

Each record's template and option order come from a RNG seeded by (build seed, record id), so a
rebuild gives the same instances regardless of processing order or which other datasets ran.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from chexagent.instruct.schema import Instance, Split
from chexagent.instruct.templates import format_options, pick
from harness.errors import UserError

# The 14 CheXpert observations (CheXpert and MIMIC-CXR label files share them), names as the
# benchmark writes them in options.
CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
DISEASES = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")


class MetadataError(UserError, FileNotFoundError):
    """A dataset's official metadata file is missing or has the wrong columns."""


def record_rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stable_fraction(*parts: object) -> float:
    """A patient-level hash in [0, 1) for datasets without an official split."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(patient_id: str, val: float = 0.15, test: float = 0.15) -> Split:
    u = stable_fraction("split", patient_id)
    return "test" if u < test else "val" if u < test + val else "train"


def read_csv(path: Path, dataset: str, required: Iterable[str], **kwargs) -> pd.DataFrame:
    if not path.is_file():
        raise MetadataError(
            f"{dataset}: {path} not found. Download {dataset} from its official source and point "
            f"--source {dataset.lower()}=DIR at the folder holding {path.name}."
        )
    frame = pd.read_csv(path, **kwargs)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MetadataError(f"{dataset}: {path} lacks columns {missing}; has {list(frame.columns)}")
    return frame


class InstanceFactory:
    """Builds the instances of one dataset with the conventions all processors share."""

    def __init__(self, dataset: str, seed: int):
        self.dataset = dataset
        self.seed = seed

    def _make(
        self,
        task: str,
        fmt: str,
        record: str,
        variant: str,
        split: Split,
        images: list[str],
        answer: str,
        options: list[str] | None = None,
        patient_id: str | None = None,
        study_id: str | None = None,
        meta: dict | None = None,
        **fields: str,
    ) -> Instance:
        rng = record_rng(self.seed, self.dataset, task, record, variant)
        if options is not None:
            fields["options"] = format_options(options)
        index, question = pick(fmt, rng, **fields)
        return Instance(
            instance_id=f"{self.dataset}/{task}/{record}/{variant}",
            task=task,
            dataset=self.dataset,
            split=split,
            images=images,
            question=question,
            answer=answer,
            options=options,
            template_format=fmt,
            template_index=index,
            patient_id=patient_id,
            study_id=study_id,
            meta=meta or {},
        )

    def multiple_choice(
        self,
        task: str,
        fmt: str,
        record: str,
        variant: str,
        split: Split,
        images: list[str],
        answer: str,
        distractors: list[str],
        **kw,
    ) -> Instance:
        """Options = answer + distractors in a per-record shuffled order."""
        rng = record_rng(self.seed, self.dataset, "options", record, variant)
        options = [answer, *distractors]
        rng.shuffle(options)
        return self._make(task, fmt, record, variant, split, images, answer, options, **kw)

    def binary(
        self,
        task: str,
        record: str,
        split: Split,
        images: list[str],
        disease: str,
        positive: bool,
        **kw,
    ) -> Instance:
        return self._make(
            task,
            "disease_binary",
            record,
            f"binary-{disease}",
            split,
            images,
            "yes" if positive else "no",
            ["no", "yes"],
            disease=disease.lower(),
            **kw,
        )

    def free_text(
        self,
        task: str,
        fmt: str,
        record: str,
        variant: str,
        split: Split,
        images: list[str],
        answer: str,
        **kw,
    ) -> Instance:
        return self._make(task, fmt, record, variant, split, images, answer, None, **kw)

    def disease_instances(
        self,
        task: str,
        record: str,
        split: Split,
        images: list[str],
        positives: list[str],
        negatives: list[str],
        **kw,
    ) -> list[Instance]:
        """Binary questions (one positive, one negative when known) and a single-disease
        identification question, the CheXbench formats, from one labelled image."""
        rng = record_rng(self.seed, self.dataset, "diseases", record)
        out = []
        if positives:
            out.append(self.binary(task, record, split, images, rng.choice(positives), True, **kw))
        if negatives:
            out.append(self.binary(task, record, split, images, rng.choice(negatives), False, **kw))
        if len(positives) == 1 and len(negatives) >= 3:
            distractors = rng.sample(negatives, 3)
            out.append(
                self.multiple_choice(
                    task,
                    "disease_single",
                    record,
                    "single",
                    split,
                    images,
                    positives[0].lower(),
                    [d.lower() for d in distractors],
                    **kw,
                )
            )
        return out
