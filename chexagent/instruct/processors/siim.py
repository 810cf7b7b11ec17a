"""SIIM-ACR Pneumothorax: `train-rle.csv` with columns `ImageId` and `EncodedPixels` (the
Kaggle file writes the second header with a leading space; "-1" means no pneumothorax),
images `dicom-images-train/<study>/<series>/<ImageId>.dcm` or `png/<ImageId>.png`.

The RLE is SIIM's relative encoding (alternating gap, run; pixels counted column-major on a
1024 x 1024 image). Segmentation answers are the mask's bounding box in [0, 1] coordinates.
SIIM is held out of training (paper section 4.2).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from chexagent.instruct.processors.base import InstanceFactory, hash_split, read_csv
from chexagent.instruct.schema import Instance

NAME = "SIIM"
SIZE = 1024


def rle_bbox(rle: str, size: int = SIZE) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) in [0, 1] of a SIIM relative RLE mask, None for an empty mask."""
    values = [int(v) for v in rle.split()]
    if not values or values == [-1]:
        return None
    pos, xs, ys = 0, [], []
    for gap, run in zip(values[0::2], values[1::2], strict=False):
        start = pos + gap
        end = start + run - 1
        # column-major: index = x * size + y
        for idx in (start, end):
            xs.append(idx // size)
            ys.append(idx % size)
        if end // size != start // size:  # a run spanning columns covers full height
            ys += [0, size - 1]
        pos = start + run
    return (min(xs) / size, min(ys) / size, (max(xs) + 1) / size, (max(ys) + 1) / size)


def image_path(root: Path, image_id: str) -> str:
    png = root / "png" / f"{image_id}.png"
    if png.exists():
        return str(png)
    hits = list((root / "dicom-images-train").glob(f"*/*/{image_id}.dcm"))
    return str(hits[0] if hits else root / "dicom-images-train" / f"{image_id}.dcm")


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    labels = read_csv(
        root / "train-rle.csv", NAME, ("ImageId", "EncodedPixels"), skipinitialspace=True
    )
    for image_id, rows in labels.groupby("ImageId", sort=True):
        boxes = [b for b in (rle_bbox(str(r)) for r in rows["EncodedPixels"]) if b]
        split = hash_split(str(image_id))
        images = [image_path(root, str(image_id))]
        common = {"patient_id": str(image_id), "study_id": str(image_id)}
        yield factory.binary(
            "ImageClassification",
            str(image_id),
            split,
            images,
            "pneumothorax",
            bool(boxes),
            **common,
        )
        if boxes:
            x0 = min(b[0] for b in boxes)
            y0 = min(b[1] for b in boxes)
            x1 = max(b[2] for b in boxes)
            y1 = max(b[3] for b in boxes)
            answer = f"[{x0:.2f}, {y0:.2f}, {x1:.2f}, {y1:.2f}]"
        else:
            answer = "no pneumothorax"
        yield factory.free_text(
            "PneumothoraxSegmentation",
            "pneumothorax_segmentation",
            str(image_id),
            "segment",
            split,
            images,
            answer,
            **common,
        )
