"""VQA-RAD and SLAKE, restricted to chest X-rays (paper appendix B).

- VQA-RAD: `VQA_RAD Dataset Public.json`, a list of {qid, image_name, image_organ ("CHEST",
  "HEAD", "ABD"), question, answer, answer_type ("CLOSED"/"OPEN"), phrase_type ("freeform",
  "para", "test_freeform", "test_para")}; images in `VQA_RAD Image Folder/`.
- SLAKE: `train.json`, `validate.json`, `test.json`, lists of {img_id, img_name
  ("xmlab102/source.jpg"), question, answer, q_lang, location, modality, answer_type};
  images under `imgs/`. Chest X-rays: modality "X-Ray" with a chest/lung location, English.
SLAKE is held out of training (paper section 4.2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import InstanceFactory, MetadataError
from chexagent.instruct.schema import Instance, Split

_YES_NO = ["no", "yes"]
_SLAKE_CHEST = {"lung", "chest", "chest_heart", "chest_lung", "chest_mediastinal"}


def _load(path: Path, dataset: str) -> list[dict]:
    if not path.is_file():
        raise MetadataError(
            f"{dataset}: {path} not found; download {dataset} and point "
            f"--source {dataset.lower()}=DIR at its folder"
        )
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise MetadataError(f"{dataset}: {path} should hold a JSON list of questions")
    return rows


def _instance(
    factory: InstanceFactory,
    qid: str,
    split: Split,
    image: str,
    question: str,
    answer: str,
    closed: bool,
) -> Instance:
    answer = " ".join(str(answer).split())
    question = " ".join(str(question).split())
    if closed and answer.lower() in _YES_NO:
        return factory.multiple_choice(
            "Close-EndedVQA",
            "vqa_closed",
            qid,
            "closed",
            split,
            [image],
            answer.lower(),
            [a for a in _YES_NO if a != answer.lower()],
            question=question,
            patient_id=image,
            study_id=image,
        )
    return factory.free_text(
        "Open-EndedVQA",
        "vqa_open",
        qid,
        "open",
        split,
        [image],
        answer,
        question=question,
        patient_id=image,
        study_id=image,
    )


def process_vqa_rad(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory("VQA-RAD", seed)
    for i, rec in enumerate(_load(root / "VQA_RAD Dataset Public.json", "VQA-RAD")):
        if str(rec.get("image_organ", "")).strip().upper() != "CHEST":
            continue
        split: Split = "test" if str(rec.get("phrase_type", "")).startswith("test") else "train"
        image = str(root / "VQA_RAD Image Folder" / rec["image_name"])
        yield _instance(
            factory,
            str(rec.get("qid", i)),
            split,
            image,
            rec["question"],
            rec["answer"],
            str(rec.get("answer_type", "")).upper() == "CLOSED",
        )


def process_slake(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory("SLAKE", seed)
    for filename, split in (
        ("train.json", "train"),
        ("validate.json", "val"),
        ("test.json", "test"),
    ):
        for rec in _load(root / filename, "SLAKE"):
            if (
                rec.get("q_lang") != "en"
                or rec.get("modality") != "X-Ray"
                or str(rec.get("location", "")).lower() not in _SLAKE_CHEST
            ):
                continue
            image = str(root / "imgs" / rec["img_name"])
            yield _instance(
                factory,
                f"{split}-{rec.get('qid')}",
                split,
                image,
                rec["question"],
                rec["answer"],
                str(rec.get("answer_type", "")).upper() == "CLOSED",
            )
