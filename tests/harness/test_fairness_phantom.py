"""End to end on phantom radiographs: an injected disparity is found, its absence is not.

The predictions come from a transparent classifier that really looks at the pixels: it finds
the two lungs (the largest dark regions not touching the film edge), measures the heart as
the bright span between them in the lower lung field and the thorax as their outer extent,
and calls cardiomegaly when that cardiothoracic ratio exceeds a threshold fitted on a separate
phantom set. Noisier, lower-contrast images (the injected "hard" subgroup) blur the lung
borders and move the true ratio towards 0.5, so they genuinely get more errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from harness.cli import main
from harness.data import load_data
from harness.io import atomic_write_jsonl
from harness.phantom import Disparity, generate_phantom
from harness.results_schema import validate_results

TASK = "chexbench_binary_disease_classification_chexpert"


def measure_ctr(
    path: Path,
    sigma: float = 0.5,
    lung_level: float = 0.3,
    window: tuple[float, float] = (0.6, 0.8),
) -> float:
    """Cardiothoracic ratio read off the image; NaN when two lungs cannot be found."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    smooth = ndimage.gaussian_filter(pixels, sigma)
    h, w = smooth.shape
    lo, hi = np.percentile(
        smooth[int(0.3 * h) : int(0.85 * h), int(0.1 * w) : int(0.9 * w)], [10, 90]
    )
    dark = smooth < lo + lung_level * (hi - lo)
    labels, n = ndimage.label(dark)
    edge = set(np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]]).tolist())
    sizes = ndimage.sum(dark, labels, range(1, n + 1))
    regions = sorted(((s, i + 1) for i, s in enumerate(sizes) if i + 1 not in edge), reverse=True)
    if len(regions) < 2:
        return float("nan")
    lungs = sorted(
        (labels == regions[0][1], labels == regions[1][1]), key=lambda m: np.nonzero(m)[1].mean()
    )
    left, right = lungs
    rows = np.nonzero(left | right)[0]
    top, bottom = rows.min(), rows.max()
    thorax = np.nonzero(right)[1].max() - np.nonzero(left)[1].min()
    spans = []
    for y in range(
        top + int(window[0] * (bottom - top)), top + int(window[1] * (bottom - top)) + 1
    ):
        lc, rc = np.nonzero(left[y])[0], np.nonzero(right[y])[0]
        if len(lc) and len(rc):
            spans.append((rc.min() - lc.max()) / thorax)
    return max(spans) if spans else float("nan")


def _items_and_ratios(root: Path):
    data = load_data(root / "fairness.json")
    ratios = np.array([measure_ctr(root / item.image_paths[0]) for item in data.perception])
    return data.perception, ratios


def _fit_threshold(root: Path) -> float:
    """The cut-off that best separates the calibration set (labels from its data file)."""
    items, ratios = _items_and_ratios(root)
    sick = np.array([item.options[item.answer] == "Yes" for item in items])
    grid = np.arange(0.45, 0.66, 0.005)
    accuracy = [np.mean((np.nan_to_num(ratios) > t) == sick) for t in grid]
    return float(grid[int(np.argmax(accuracy))])


def _classify_and_save(root: Path, threshold: float, out: Path) -> Path:
    """Per-sample rows exactly as `chexbench run` writes them for the fairness items."""
    items, ratios = _items_and_ratios(root)
    rows = []
    for item, ratio in zip(items, ratios, strict=True):
        says_yes = bool(np.nan_to_num(ratio) > threshold)
        prediction = item.options.index("Yes" if says_yes else "No")
        rows.append(
            {
                "task": TASK,
                "item_id": item.item_id,
                "doc_id": item.index,
                "dataset": item.dataset,
                "cluster_id": item.cluster_id,
                "question": item.question,
                "options": item.options,
                "answer": item.answer,
                "image_paths": item.image_paths,
                "prediction": prediction,
                "correct": prediction == item.answer,
            }
        )
    atomic_write_jsonl(out, rows)
    return out


@pytest.fixture(scope="module")
def threshold(tmp_path_factory) -> float:
    root = tmp_path_factory.mktemp("calibration")
    generate_phantom(root, n_per_pair=1, n_text=0, n_fairness=100, seed=1)
    return _fit_threshold(root)


def _fairness(tmp: Path, disparity: Disparity | None, threshold: float) -> dict:
    root = tmp / "phantom"
    generate_phantom(root, n_per_pair=1, n_text=0, n_fairness=240, seed=0, disparity=disparity)
    samples = _classify_and_save(root, threshold, tmp / "run.samples.jsonl")
    out = tmp / "fairness"
    assert (
        main(
            [
                "fairness",
                str(samples),
                "--demographics",
                str(root / "demographics.csv"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    obj = json.loads((out / "fairness.json").read_text())
    assert validate_results(obj) == []
    with Image.open(out / "fairness.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert (out / "fairness.csv").read_text().startswith("attribute,group,f1_mean")
    return obj["fairness"]


def test_injected_disparity_is_detected(tmp_path, threshold):
    block = _fairness(tmp_path, Disparity("race", "Black", 0.8), threshold)
    assert block["protocol"] == "paper-section-7" and block["B"] == 2000
    race = block["attributes"]["race"]
    gap = race["gap"]
    assert gap["config"]["worst"] == "Black"
    assert gap["ci"][0] > 0, gap
    groups = race["groups"]
    assert groups["Black"]["f1_mean"] < min(groups["Asian"]["f1_mean"], groups["White"]["f1_mean"])
    assert set(block["attributes"]) == {"sex", "race", "age"}
    assert block["n_items"] == 240 and block["excluded"] == {}


def test_without_injection_the_gap_ci_covers_zero(tmp_path, threshold):
    block = _fairness(tmp_path, None, threshold)
    for name in ("sex", "race", "age"):
        gap = block["attributes"][name]["gap"]
        assert gap["ci"][0] <= 0 <= gap["ci"][1], (name, gap)
