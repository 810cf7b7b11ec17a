"""The phantom CheXbench (`harness.phantom.generate_phantom(..., split="train")`) as
CheXinstruct: the folder's `data.json` items become multiple-choice instances in exactly the
benchmark's wording, and `truth.jsonl` (one row per image: view, findings and their sides,
sizes and severities) adds templated instances per image, as CheXinstruct derives them from a
dataset's labels: view, binary disease, a caption naming sides and sizes (with structured labels
for the vision warm-up), and on frontal images image-text reasoning hard negatives and
Rad-Restruct/SLAKE-style closed questions, written by the same functions that write the
benchmark's items (`harness.phantom.tasks`). Paths in both files are relative to the folder.

All phantom pairs use the dataset name "Phantom"; the benchmark dataset an item imitates is
kept in `meta["data_source"]`. The demo recipe gives every phantom pair ratio 1.0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from chexagent.instruct.processors.base import InstanceFactory, MetadataError, record_rng
from chexagent.instruct.schema import Instance
from harness.data import load_data
from harness.phantom.attributes import Findings
from harness.phantom.tasks import (
    REASONING_KINDS,
    REASONING_QUESTION,
    SLAKE_TARGETS,
    rad_restruct_questions,
    slake_questions,
)
from harness.taxonomy import resolve_task

NAME = "Phantom"
TASK_NAMES = {  # CheXbench task slug -> CheXinstruct task name (Table 5 style)
    "view_classification": ("ViewClassification", "view"),
    "binary_disease_classification": ("ImageClassification", "disease_binary"),
    "single_disease_identification": ("SingleDiseaseIdentification", "disease_single"),
    "multi_disease_identification": ("MultiDiseaseIdentification", "disease_multi"),
    "visual_question_answering": ("Close-EndedVQA", "vqa_closed"),
    "image_text_reasoning": ("Image-TextReasoning", "vqa_closed"),
}
VIEW_OPTIONS = {"PA": "PA", "AP": "AP", "LATERAL": "Lateral", "LL": "LL"}
FRONTAL = ("PA", "AP")
YES, NO = "Yes", "No"
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


def _described(f: Findings, frontal: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """(label, caption phrase, attribute values) of every finding an image shows, in order.
    A lateral image cannot show which side a finding is on, so its sides are left out."""

    def side(value: str | None) -> str | None:
        return value if frontal else None

    out: list[tuple[str, tuple[str | None, ...], tuple[str | None, ...]]] = []
    if f.cardiomegaly:
        out.append(("cardiomegaly", (f.heart_size, "cardiomegaly"), (f.heart_size,)))
    if f.effusion:
        size = f.effusion_size or "small"
        noun = "pleural effusions" if f.effusion == "bilateral" else "pleural effusion"
        out.append(("pleural effusion", (size, side(f.effusion), noun), (side(f.effusion), size)))
    if f.pneumothorax:
        size = f.pneumothorax_size or "small"
        out.append(
            (
                "pneumothorax",
                (size, side(f.pneumothorax), "pneumothorax"),
                (side(f.pneumothorax), size),
            )
        )
    if f.consolidation:
        lobe = f.consolidation_lobe or "lower"
        out.append(
            (
                "consolidation",
                (side(f.consolidation), lobe, "lobe consolidation"),
                (side(f.consolidation), lobe),
            )
        )
    if f.pneumonia:
        out.append(("pneumonia", (side(f.pneumonia), "pneumonia"), (side(f.pneumonia),)))
    if f.edema:
        out.append(("edema", (f.edema, "edema"), (f.edema,)))
    if f.atelectasis:
        out.append(("atelectasis", (side(f.atelectasis), "atelectasis"), (side(f.atelectasis),)))
    if f.lesion:
        zone = f.lesion_zone or "middle"
        out.append(("lung lesion", (side(f.lesion), zone, "lung lesion"), (side(f.lesion), zone)))
    if f.devices:
        out.append(("support devices", ("support devices",), ()))
    if f.elevated_diaphragm:
        out.append(
            (
                "elevated hemidiaphragm",
                ("elevated", side(f.elevated_diaphragm), "hemidiaphragm"),
                (side(f.elevated_diaphragm),),
            )
        )
    return [
        (label, " ".join(w for w in words if w), tuple(v for v in values if v))
        for label, words, values in out
    ]


def caption(view: str, f: Findings) -> str:
    """A label caption for stages 1-2: what the pixels show, sides and sizes included, in the
    benchmark's vocabulary ("PA view. severe cardiomegaly, small left pleural effusion.")."""
    shown = [phrase for _, phrase, _ in _described(f, view in FRONTAL)]
    return f"{VIEW_OPTIONS.get(view, view)} view. " + (", ".join(shown) or "no finding") + "."


def image_labels(view: str, f: Findings) -> list[str]:
    """The structured labels of one image (the vision warm-up's targets): the view, each
    finding, and each finding's attributes on their own ("pleural effusion: left"), so a
    side or a size is learned across findings rather than once per combination."""
    labels = [f"{VIEW_OPTIONS.get(view, view).lower()} view"]
    for label, _, values in _described(f, view in FRONTAL):
        labels.append(label)
        labels.extend(f"{label}: {v}" for v in values)
    return labels


def reasoning_instances(
    factory: InstanceFactory,
    rec: str,
    split: str,
    image: list[str],
    f: Findings,
    **common: str | None,
) -> Iterator[Instance]:
    """Image-text reasoning on a training image: the benchmark's hard-negative kinds (one word
    flipped: side, size or severity), for every kind the image's findings fit."""
    present = set(f.labels())
    for kind in REASONING_KINDS:
        value = f.heart_size if kind.attr == "heart" else getattr(f, kind.attr)
        if value not in kind.values or not kind.labels <= present:
            continue
        if any(getattr(f, k) != v for k, v in kind.extra.items()):
            continue
        other = kind.values[1 - kind.values.index(value)]
        yield factory.multiple_choice(
            "Image-TextReasoning",
            "vqa_closed",
            rec,
            f"reasoning-{kind.attr}",
            split,
            image,
            kind.phrase(value),
            [kind.phrase(other)],
            question=REASONING_QUESTION,
            **common,
        )


def vqa_instances(
    factory: InstanceFactory,
    rec: str,
    split: str,
    image: list[str],
    f: Findings,
    seed: int,
    **common: str | None,
) -> Iterator[Instance]:
    """Closed questions on a training image, asked the way the benchmark's VQA sets ask them:
    one Rad-Restruct-style question (most specific first, as the benchmark picks) and one
    SLAKE-style question about a finding drawn per image."""
    rng = record_rng(seed, NAME, "vqa", rec)
    position = np.random.default_rng(rng.getrandbits(64))
    rad = rad_restruct_questions(f, position, lambda: 0)[:2]
    slake = slake_questions(f, rng.choice(sorted(SLAKE_TARGETS)))
    for variant, (question, options, answer) in (
        ("rad-restruct", rng.choice(rad)),
        ("slake", rng.choice(slake)),
    ):
        truth = options[answer]
        yield factory.multiple_choice(
            "Close-EndedVQA",
            "vqa_closed",
            rec,
            f"vqa-{variant}",
            split,
            image,
            truth,
            [o for o in options if o != truth],
            question=question,
            **common,
        )


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    data_path, truth_path = root / "data.json", root / "truth.jsonl"
    if not truth_path.is_file():
        raise MetadataError(
            f"{NAME}: {truth_path} not found; generate one with "
            "harness.phantom.generate_phantom(out_dir, split='train')"
        )
    split = "train"
    manifest = root / "phantom.json"
    if manifest.is_file():
        split = {"train": "train", "test": "test"}.get(
            json.loads(manifest.read_text()).get("split"), "train"
        )
    data = load_data(data_path)
    for item in data.perception:
        task, fmt = TASK_NAMES[item.task]
        images = [str(root / p) for p in item.image_paths]
        yield Instance(
            instance_id=f"{NAME}/{task}/{item.item_id}/benchmark",
            task=task,
            dataset=NAME,
            split=split,
            images=images,
            question=item.question,
            answer=item.options[item.answer],
            options=item.options,
            template_format=fmt,
            template_index=0,
            patient_id=item.cluster_id,
            meta={"data_source": item.data_source, "benchmark_item": item.item_id},
        )
    for item in data.text:
        images = [str(root / p) for p in item.image_paths]
        if item.task == "findings_generation" and item.findings:
            yield factory.free_text(
                "FindingsGeneration",
                "findings_generation",
                item.item_id,
                "report",
                split,
                images[:2],
                item.findings,
                indication=item.indication or "",
                patient_id=item.cluster_id,
            )
        elif item.task == "findings_summarization" and item.findings and item.impression:
            yield factory.free_text(
                "FindingsSummarization",
                "findings_summarization",
                item.item_id,
                "summary",
                split,
                [],
                item.impression,
                findings=item.findings,
                patient_id=item.cluster_id,
            )
    for lineno, line in enumerate(truth_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = {"image_path", "view", "findings", "patient_id"} - set(row)
        if missing:
            raise MetadataError(f"{truth_path}:{lineno}: missing {sorted(missing)}")
        rec, image = row["image_path"], [str(root / row["image_path"])]
        common = {"patient_id": row["patient_id"], "study_id": row.get("study_id")}
        view = VIEW_OPTIONS[row["view"]]
        findings = row_findings(row, f"{truth_path}:{lineno}")
        yield factory.multiple_choice(
            "ViewClassification",
            "view",
            rec,
            "view",
            split,
            image,
            view,
            [v for v in VIEW_OPTIONS.values() if v != view],
            **common,
        )
        yield factory.free_text(
            "FindingsGeneration",
            "findings_generation",
            rec,
            "caption",
            split,
            image,
            caption(row["view"], findings),
            meta={"labels": image_labels(row["view"], findings)},
            **common,
        )
        if row["view"] in FRONTAL:
            yield from reasoning_instances(factory, rec, split, image, findings, **common)
            yield from vqa_instances(factory, rec, split, image, findings, seed, **common)
            rng = record_rng(seed, NAME, "binary", rec)
            present = [d for d in DISEASES if d in row["findings"]]
            absent = [d for d in DISEASES if d not in row["findings"]]
            for disease, yes in ([(rng.choice(present), True)] if present else []) + [
                (rng.choice(absent), False)
            ]:
                yield factory._make(
                    "ImageClassification",
                    "disease_binary",
                    rec,
                    f"binary-{disease}",
                    split,
                    image,
                    YES if yes else NO,
                    [YES, NO],
                    disease=disease,
                    **common,
                )


def row_findings(row: dict, where: str) -> Findings:
    """The study's findings as the phantom generator drew them (truth.jsonl "details")."""
    details = dict(row.get("details") or {})
    details.setdefault("ctr", row.get("ctr"))
    details["devices"] = tuple(details.get("devices", ()))
    try:
        return Findings(**details)
    except TypeError as exc:
        raise MetadataError(f"{where}: details do not describe phantom findings ({exc})") from exc


def benchmark_task(name: str) -> str | None:
    task = resolve_task(name)
    return task.slug if task else None
