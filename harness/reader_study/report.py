"""The analysis as a results-schema file, so the leaderboard can show it beside the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.reader_study.analysis import analyze_task, score_frame
from harness.reader_study.design import A_PREFERENCE, ATTRIBUTES, SCALE
from harness.reader_study.ratings import Rating
from harness.results_io import results_id
from harness.results_schema import ModelInfo, Results
from harness.stats.run_files import analysis_run_card


def _model(key: dict[str, Any]) -> ModelInfo:
    model = dict(key["x"].get("model") or {})
    try:
        return ModelInfo(**model) if model else ModelInfo(name=key["x"]["name"])
    except ValueError:
        return ModelInfo(name=key["x"]["name"])


def build_results(
    keys: list[dict[str, Any]], ratings: list[Rating], B: int, seed: int, inputs: list[Path]
) -> tuple[Results, Any]:
    """The results and the long score table behind them."""
    tasks = [k["task"] for k in keys]
    if len(set(tasks)) != len(tasks):
        raise UserError("two --key files are for the same task; analyze them separately")
    xs = {k["x"]["name"] for k in keys}
    if len(xs) != 1:
        raise UserError(
            f"the keys compare different systems X ({', '.join(sorted(xs))}); one "
            "results file describes one model: analyze them separately"
        )
    frame = score_frame(keys, ratings)
    blocks = {k["task"]: analyze_task(k, frame, B, seed) for k in keys}
    synthetic = any(k[s].get("smoke") or k[s].get("synthetic") for k in keys for s in ("x", "y"))
    block = {
        "tasks": blocks,
        "attributes": list(ATTRIBUTES),
        "scale": {str(c): {"label": SCALE[c], "a_preference": A_PREFERENCE[c]} for c in SCALE},
        "score": "-10..10; positive favours x (the model), negative favours y",
        "seed": seed,
        "B": B,
        "study_ids": [k["study_id"] for k in keys],
    }
    card = analysis_run_card(
        seed, {"B": B, "seed": seed, "unit": TWO_WAY_UNIT}, inputs, {"synthetic_inputs": synthetic}
    )
    card.synthetic = synthetic
    results = Results(
        run_id=results_id(
            "reader-study", {"studies": block["study_ids"], "seed": seed, "B": B, "n": len(ratings)}
        ),
        kind="reader_study",
        source="demo" if synthetic else "reproduced",
        model=_model(keys[0]),
        run_card=card,
        reader_study=block,
    )
    return results, frame


TWO_WAY_UNIT = "items (clusters when known) x readers"
