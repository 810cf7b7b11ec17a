"""`chexagent demo-train`: the documented recipe behind the shipped demo model.

1. generate a phantom CheXbench TRAIN split (patients disjoint from the test split) and a TEST
   split (the leakage guard's reference and the held-out check);
2. build the phantom CheXinstruct (every phantom pair at ratio 1.0, leakage-guarded);
3. run stages 0 -> 1 -> 2 -> 3 with the `demo` config, each stage starting from the previous
   stage's exported checkpoint; before stage 1, the supervised vision warm-up (the config's
   `vision_warmup`) stands in for the paper's pretrained ViT and Q-Former;
4. save the result with `save_bundle` and score it on the test split (CheXbench MC rule).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from chexagent import DEMO_MODEL_DIR
from chexagent.evaluate import evaluate_data
from chexagent.instruct.build import build
from chexagent.instruct.store import InstanceStore
from chexagent.modeling import build_model, load_bundle, save_bundle
from chexagent.training.config import load_config
from chexagent.training.trainer import StageTrainer, read_log
from chexagent.training.vision_warmup import warm_up_vision
from harness.io import atomic_write_json

DONE = ".done"


def _mark(folder: Path) -> None:
    atomic_write_json(folder / DONE, {"finished": time.time()})


# Degraded training films for patients 65+ (a third of them), a subgroup other than the one the
# benchmark degrades (race=Black): trained on clean films only, an earlier model lost view
# accuracy on `chexbench demo`'s degraded films. With these, it reads them as well as the rest,
# so `chexbench demo`'s fairness step finds no gap for it (README).
TRAIN_HARD_FILMS = "age=65+:0.8"
PHANTOM_RATIOS = {  # the demo mix: every phantom pair once per epoch
    f"({task})Phantom": 1.0
    for task in (
        "ViewClassification",
        "ImageClassification",
        "SingleDiseaseIdentification",
        "MultiDiseaseIdentification",
        "Close-EndedVQA",
        "Image-TextReasoning",
        "FindingsGeneration",
        "FindingsSummarization",
    )
}


def _fingerprint(**recipe: Any) -> dict[str, Any]:
    cfg = load_config(recipe["config"])
    return {**recipe, "config_body": cfg.model_dump(mode="json")}


def _prepare_work(work: Path, recipe: dict[str, Any], fresh: bool) -> set[str]:
    """Finished steps of an earlier run of the SAME recipe are reused (a killed run resumes
    where it stopped); any change of recipe or --fresh starts from scratch."""
    marker = work / "recipe.json"
    same = marker.is_file() and json.loads(marker.read_text()) == recipe
    if fresh or not same:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        atomic_write_json(marker, recipe)
        return set()
    done = {p.name for p in work.iterdir() if (p / DONE).is_file()}
    return done


def demo_train(
    work_dir: str | Path,
    out_model: str | Path = DEMO_MODEL_DIR,
    seed: int = 0,
    n_per_pair: int = 400,
    image_size: int = 128,
    config: str = "demo",
    eval_n_per_pair: int = 40,
    train_hard: str = TRAIN_HARD_FILMS,
    progress: bool = True,
    fresh: bool = False,
) -> dict[str, Any]:
    """`train_hard`: the subgroup whose TRAINING films are degraded (the phantom's disparity
    rendering), so the model has seen low-contrast, noisy films; `chexbench demo` degrades
    Black patients' films (DEMO_DISPARITY), and the held-out test split here does too."""
    from harness.phantom import DEMO_DISPARITY, Disparity, generate_phantom

    work = Path(work_dir)
    recipe = _fingerprint(
        seed=seed,
        n_per_pair=n_per_pair,
        image_size=image_size,
        config=config,
        eval_n_per_pair=eval_n_per_pair,
        train_hard=train_hard,
        test_hard=DEMO_DISPARITY,
    )
    done = _prepare_work(work, recipe, fresh)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if "phantom-train" not in done:
        generate_phantom(
            work / "phantom-train",
            n_per_pair=n_per_pair,
            seed=seed + 1,
            image_size=image_size,
            split="train",
            n_text=n_per_pair,
            n_fairness=0,
            disparity=Disparity.parse(train_hard),
        )
        _mark(work / "phantom-train")
    if "phantom-test" not in done:
        generate_phantom(
            work / "phantom-test",
            n_per_pair=eval_n_per_pair,
            seed=seed,
            image_size=image_size,
            split="test",
            n_text=0,
            n_fairness=0,
            disparity=Disparity.parse(DEMO_DISPARITY),
        )
        _mark(work / "phantom-test")
    test_json = work / "phantom-test" / "data.json"
    timings["phantom_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    if "chexinstruct" not in done:
        build(
            work / "chexinstruct",
            {"phantom": work / "phantom-train"},
            seed=seed,
            benchmarks=[test_json],
            ratio_overrides=PHANTOM_RATIOS,
        )
        _mark(work / "chexinstruct")
    built = json.loads((work / "chexinstruct" / "report.json").read_text())
    built = {
        "leakage_removed": len(built["leakage_removed"]),
        "stage3_drawn": sum(built["mix"]["drawn"].values()),
    }
    timings["build_s"] = time.perf_counter() - t
    all_instances = list(InstanceStore(work / "chexinstruct" / "instances"))
    mixture = list(InstanceStore(work / "chexinstruct" / "stage3-train"))

    cfg = load_config(config)
    bundle = build_model(cfg.arch, seed=seed, qformer_text_input=True)
    stage_losses = {}
    for stage in (0, 1, 2, 3):
        t = time.perf_counter()
        stage_dir = work / f"stage{stage}"
        if stage_dir.name not in done:
            if stage == 1 and cfg.vision_warmup is not None:
                warm_log = warm_up_vision(
                    bundle, all_instances, cfg.vision_warmup, seed=seed, show_progress=progress
                )
                timings["vision_warmup_s"] = time.perf_counter() - t
                atomic_write_json(
                    work / "vision_warmup.json",
                    {
                        "config": cfg.vision_warmup.model_dump(),
                        "first": warm_log[0],
                        "last": warm_log[-1],
                        "seconds": timings["vision_warmup_s"],
                    },
                )
                t = time.perf_counter()
            data = mixture if stage == 3 else all_instances
            trainer = StageTrainer(
                stage, cfg.stages[stage], bundle, data, stage_dir, seed=seed, show_progress=progress
            )
            trainer.train()
            _mark(stage_dir)
        bundle = load_bundle(stage_dir / "model")
        log = read_log(stage_dir)
        timings[f"stage{stage}_s"] = time.perf_counter() - t
        stage_losses[stage] = {
            "first": log[0]["loss"],
            "last": log[-1]["loss"],
            "steps": log[-1]["step"],
        }
    timings["total_s"] = time.perf_counter() - t0

    save_bundle(
        bundle,
        out_model,
        extra={
            "recipe": "chexagent demo-train",
            "config": cfg.name,
            "seed": seed,
            "n_per_pair": n_per_pair,
            "trained_stage": 3,
        },
    )
    t = time.perf_counter()
    accuracy = evaluate_data(bundle, test_json, show_progress=progress)
    timings["eval_s"] = time.perf_counter() - t
    summary = {
        "model_dir": str(out_model),
        "build": built,
        "timings_s": timings,
        "stage_losses": stage_losses,
        "test_accuracy": accuracy,
        "test_data": str(test_json),
        "seed": seed,
        "reused_steps": sorted(done),
    }
    atomic_write_json(work / "demo_summary.json", summary)
    return summary
