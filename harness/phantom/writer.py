"""Writing a whole phantom CheXbench folder: images, data.json, fairness.json, truth, demographics.

Everything is first written to a staging folder inside `out_dir` and moved into place at the
end, so an interrupted generation never leaves a data.json that points at missing images.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.errors import UserError
from harness.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from harness.phantom.attributes import Disparity, sample_labels
from harness.phantom.report import findings_text, impression_text, indication
from harness.phantom.studies import StudyFactory
from harness.phantom.tasks import CHEXPERT_BINARY, NO, YES, TaskBuilder, frontal_view, sample

FAIRNESS_QUESTION = "Does this chest X-ray contain cardiomegaly?"
MANIFEST = "phantom.json"
OUTPUTS = ("data", "data.json", "fairness.json", "demographics.csv", "truth.jsonl", MANIFEST)


@dataclass(frozen=True)
class PhantomResult:
    out_dir: Path
    data_json: Path
    fairness_json: Path
    demographics_csv: Path
    truth_jsonl: Path
    manifest: Path
    n_images: int
    seconds: float


def _perception(builder: TaskBuilder, n: int) -> dict[str, list[dict]]:
    """The 14 task/dataset pairs of Table 9, `n` items each."""
    return {
        "View Classification": (
            builder.view_classification("mimic_cxr", n) + builder.view_classification("chexpert", n)
        ),
        "Binary Disease Classification": (
            builder.binary("siim", n, ("pneumothorax",))
            + builder.binary("rsna", n, ("pneumonia",))
            + builder.binary("chexpert", n, CHEXPERT_BINARY)
        ),
        "Single Disease Identification": (
            builder.single_disease("openi", n)
            + builder.single_disease("mimic_cxr", n)
            + builder.single_disease("chexpert", n)
        ),
        "Multiple Disease Identification": (
            builder.multi_disease("openi", n)
            + builder.multi_disease("mimic_cxr", n)
            + builder.multi_disease("chexpert", n)
        ),
        "Visual Question Answering": builder.rad_restruct(n) + builder.slake(n),
        "Fine-Grained Reasoning": builder.image_text_reasoning("openi", n),
    }


def _text(builder: TaskBuilder, n: int) -> dict[str, list[dict]]:
    factory = builder.factory
    rng = builder.rng("text")
    generation, summarization = [], []
    for i in range(n):
        # Most MIMIC-CXR studies have a frontal and a lateral image; some only a frontal.
        views = (frontal_view(rng),) if i % 5 == 4 else (frontal_view(rng), "LATERAL")
        study = factory.new("mimic_cxr", sample_labels(rng), views, rng)
        generation.append(
            {
                "data_source": study.data_source,
                "image_path": list(study.image_paths),
                "section_indication": indication(study.patient, rng),
                "section_findings": findings_text(study.findings, rng),
            }
        )
    for _ in range(n):
        study = factory.new("mimic_cxr", sample_labels(rng), (frontal_view(rng),), rng)
        summarization.append(
            {
                "data_source": study.data_source,
                "image_path": list(study.image_paths),
                "section_findings": findings_text(study.findings, rng),
                "section_impression": impression_text(study.findings),
            }
        )
    # A task with no items is refused by the loader (an empty list is a broken file), so a
    # set without text items has no text keys.
    texts = {"Findings Generation": generation, "Findings Summarization": summarization}
    return {key: items for key, items in texts.items() if items}


def _fairness(builder: TaskBuilder, n: int) -> dict[str, list[dict]]:
    """Section 7: CheXpert frontal films of distinct subjects, 'No Finding' or 'Cardiomegaly'."""
    rng = builder.rng("fairness")
    items = []
    for i in range(n):
        sick = i % 2 == 0
        study = builder.factory.new(
            "chexpert", {"cardiomegaly"} if sick else set(), (frontal_view(rng),), rng
        )
        items.append(sample(study, FAIRNESS_QUESTION, [YES, NO], 0 if sick else 1))
    order = rng.permutation(n)
    return {"Binary Disease Classification": [items[int(j)] for j in order]}


def _demographics_csv(factory: StudyFactory) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["patient_id", "sex", "race", "age"])
    for p in factory.patients.values():
        writer.writerow([p.patient_id, p.sex, p.race, p.age])
    return buf.getvalue()


def _install(staging: Path, out_dir: Path) -> None:
    """Swap the staged outputs in; files by atomic rename, the image folder by two renames."""
    old = out_dir / ".phantom-old"
    if old.exists():
        shutil.rmtree(old)
    for name in OUTPUTS:
        src, dst = staging / name, out_dir / name
        if src.is_dir():
            if dst.exists():
                os.replace(dst, old)
            os.replace(src, dst)
        else:
            os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


class PhantomError(UserError, ValueError):
    """Settings or an output folder the generator refuses: the user's to fix."""


def generate_phantom(
    out_dir: str | Path,
    n_per_pair: int = 20,
    seed: int = 0,
    image_size: int = 128,
    split: str = "test",
    disparity: Disparity | None = None,
    n_text: int = 20,
    n_fairness: int = 200,
    progress: bool = False,
) -> PhantomResult:
    """Write a phantom CheXbench folder; the same arguments give byte-identical files."""
    if n_per_pair < 1 or n_text < 0 or n_fairness < 0:
        raise PhantomError("n_per_pair must be >= 1 and n_text, n_fairness >= 0")
    if not 32 <= image_size <= 2048:
        raise PhantomError(f"image_size must be between 32 and 2048, got {image_size}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "data").exists() and not (out_dir / MANIFEST).exists():
        raise PhantomError(
            f"{out_dir}/data exists and was not written by the phantom generator; "
            "choose an empty --out folder"
        )
    staging = out_dir / ".phantom-staging"
    if staging.exists():
        shutil.rmtree(staging)  # left over from an interrupted generation
    factory = StudyFactory(staging, split, seed, image_size, disparity)
    builder = TaskBuilder(factory, seed)
    steps = [
        ("perception", lambda: _perception(builder, n_per_pair)),
        ("text", lambda: _text(builder, n_text)),
        ("fairness", lambda: _fairness(builder, n_fairness)),
    ]
    produced: dict[str, dict[str, list[dict]]] = {}
    for name, step in tqdm(steps, desc="phantom", disable=not progress):
        produced[name] = step()
    data = {**produced["perception"], **produced["text"]}
    atomic_write_json(staging / "data.json", data)
    atomic_write_json(staging / "fairness.json", produced["fairness"])
    atomic_write_text(staging / "demographics.csv", _demographics_csv(factory))
    atomic_write_jsonl(staging / "truth.jsonl", factory.truth)
    manifest = {
        "generator": "harness.phantom",
        "synthetic": True,
        "seed": seed,
        "split": split,
        "n_per_pair": n_per_pair,
        "image_size": image_size,
        "n_text": n_text,
        "n_fairness": n_fairness,
        "disparity": asdict(disparity) if disparity else None,
        "n_images": len(factory.truth),
        "n_patients": len(factory.patients),
        "image_root": ".",
        "numpy": np.__version__,
    }
    atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    _install(staging, out_dir)
    return PhantomResult(
        out_dir=out_dir,
        data_json=out_dir / "data.json",
        fairness_json=out_dir / "fairness.json",
        demographics_csv=out_dir / "demographics.csv",
        truth_jsonl=out_dir / "truth.jsonl",
        manifest=out_dir / MANIFEST,
        n_images=len(factory.truth),
        seconds=time.perf_counter() - start,
    )


def ensure_phantom(out: Path, n_per_pair: int, seed: int, disparity: str, n_fairness: int) -> Path:
    """Reuse an identical earlier phantom set; regenerate when the arguments differ."""
    disp = None if disparity.lower() == "none" else Disparity.parse(disparity)
    manifest = out / "phantom.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if (
            old.get("n_per_pair"),
            old.get("seed"),
            old.get("disparity"),
            old.get("n_fairness"),
        ) == (n_per_pair, seed, asdict(disp) if disp else None, n_fairness):
            return out
    generate_phantom(out, n_per_pair=n_per_pair, seed=seed, disparity=disp, n_fairness=n_fairness)
    return out
