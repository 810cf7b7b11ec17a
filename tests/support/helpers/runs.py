"""`chexbench run` end to end on a small phantom set: what every adapter's e2e test calls."""

from __future__ import annotations

import json

from harness.cli import main
from harness.phantom.writer import generate_phantom

TASK = "chexbench_view_classification_mimic_cxr"


def run_e2e(tmp_path, model: str, model_args: str, extra: tuple[str, ...] = ()) -> dict:
    """`chexbench run` on phantom data; returns results.json (shared by the adapter tests)."""
    ph = generate_phantom(
        tmp_path / "phantom", n_per_pair=2, seed=0, image_size=64, n_text=0, n_fairness=0
    )
    out = tmp_path / "runs"
    rc = main(
        [
            "run",
            "--model",
            model,
            "--model-args",
            model_args,
            "--data",
            str(ph.data_json),
            "--image-root",
            str(ph.out_dir),
            "--output",
            str(out),
            "--tasks",
            TASK,
            "--text-metrics",
            "rouge",
            "--bootstrap-samples",
            "20",
            "--batch-size",
            "2",
            *extra,
        ]
    )
    assert rc == 0
    (results,) = out.glob("*/results.json")
    return json.loads(results.read_text())
