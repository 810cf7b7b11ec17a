"""The phantom CheXbench (`harness.phantom.generate_phantom(..., split="train")`) as
CheXinstruct: the folder's `data.json` items become multiple-choice instances in exactly the
benchmark's wording, and `truth.jsonl` (one row per image: view, findings) adds templated view,
binary-disease and caption instances. Paths in both files are relative to the folder.

All phantom pairs use the dataset name "Phantom"; the benchmark dataset an item imitates is
kept in `meta["data_source"]`. The demo recipe gives every phantom pair ratio 1.0.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import InstanceFactory, MetadataError, record_rng
from chexagent.instruct.schema import Instance
from harness.data import load_data
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
YES, NO = "Yes", "No"
DISEASES = ("cardiomegaly", "pleural effusion", "pneumothorax", "consolidation", "pneumonia",
            "edema", "atelectasis", "lung lesion", "support devices")


def caption(view: str, findings: list[str]) -> str:
    """A label caption for stages 1-2: what the pixels show, in benchmark vocabulary."""
    shown = [f for f in findings if f != "no finding"]
    return f"{VIEW_OPTIONS.get(view, view)} view. " + (", ".join(shown) if shown else
                                                          "no finding") + "."


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    data_path, truth_path = root / "data.json", root / "truth.jsonl"
    if not truth_path.is_file():
        raise MetadataError(f"{NAME}: {truth_path} not found; generate one with "
                            "harness.phantom.generate_phantom(out_dir, split='train')")
    split = "train"
    manifest = root / "phantom.json"
    if manifest.is_file():
        split = {"train": "train", "test": "test"}.get(json.loads(manifest.read_text())
                                                       .get("split"), "train")
    data = load_data(data_path)
    for item in data.perception:
        task, fmt = TASK_NAMES[item.task]
        images = [str(root / p) for p in item.image_paths]
        yield Instance(
            instance_id=f"{NAME}/{task}/{item.item_id}/benchmark", task=task, dataset=NAME,
            split=split, images=images, question=item.question,
            answer=item.options[item.answer], options=item.options, template_format=fmt,
            template_index=0, patient_id=item.cluster_id,
            meta={"data_source": item.data_source, "benchmark_item": item.item_id},
        )
    for item in data.text:
        images = [str(root / p) for p in item.image_paths]
        if item.task == "findings_generation" and item.findings:
            yield factory.free_text("FindingsGeneration", "findings_generation", item.item_id,
                                    "report", split, images[:2], item.findings,
                                    indication=item.indication or "", patient_id=item.cluster_id)
        elif item.task == "findings_summarization" and item.findings and item.impression:
            yield factory.free_text("FindingsSummarization", "findings_summarization",
                                    item.item_id, "summary", split, [], item.impression,
                                    findings=item.findings, patient_id=item.cluster_id)
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
        yield factory.multiple_choice("ViewClassification", "view", rec, "view", split, image,
                                      view, [v for v in VIEW_OPTIONS.values() if v != view],
                                      **common)
        yield factory.free_text("FindingsGeneration", "findings_generation", rec, "caption",
                                split, image, caption(row["view"], row["findings"]), **common)
        if row["view"] in ("PA", "AP"):
            rng = record_rng(seed, NAME, "binary", rec)
            present = [d for d in DISEASES if d in row["findings"]]
            absent = [d for d in DISEASES if d not in row["findings"]]
            for disease, yes in ([(rng.choice(present), True)] if present else []) + \
                    [(rng.choice(absent), False)]:
                yield factory._make("ImageClassification", "disease_binary", rec,
                                    f"binary-{disease}", split, image, YES if yes else NO,
                                    [YES, NO], disease=disease, **common)


def benchmark_task(name: str) -> str | None:
    task = resolve_task(name)
    return task.slug if task else None
