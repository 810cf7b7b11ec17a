"""DeepSpeed ZeRO-2 runs a stage on CPU with the gloo backend, a run resumed from its checkpoint
continues the uninterrupted run's loss curve, and two data-parallel processes train exactly
like one."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from chexagent.instruct.schema import Instance
from chexagent.modeling import build_model
from chexagent.training.config import deepspeed_config, load_config
from chexagent.training.trainer import StageTrainer, read_log
from harness.multiprocess import free_port

deepspeed = pytest.importorskip(
    "deepspeed", reason="pip install --no-build-isolation deepspeed==0.19.8 (the Makefile does)"
)

TEXTS = [
    "no acute cardiopulmonary process.",
    "small left pleural effusion.",
    "the heart size is normal.",
    "moderate cardiomegaly with pulmonary edema.",
    "right-sided pneumothorax.",
    "lungs are clear.",
]


pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]


def _instances() -> list[Instance]:
    return [
        Instance(
            instance_id=f"t/{i}",
            task="FindingsSummarization",
            dataset="Phantom",
            split="train",
            question="Summarize the following Findings:",
            answer=t,
            template_format="findings_summarization",
            template_index=0,
        )
        for i, t in enumerate(TEXTS)
    ]


def test_zero2_gloo_stage0_resume_continues_curve(tmp_path):
    cfg = (
        load_config("tiny")
        .stages[0]
        .model_copy(update={"max_steps": 4, "micro_batch": 2, "global_batch": 4, "warmup_steps": 1})
    )
    ds = deepspeed_config(cfg)
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 1.0
    out = tmp_path / "run"
    full = StageTrainer(
        0,
        cfg,
        build_model("tiny", 0),
        _instances(),
        out,
        backend="deepspeed",
        save_every=2,
        show_progress=False,
    )
    assert type(full.engine.optimizer).__name__ == "DeepSpeedZeroOptimizer"
    first = full.train(export=False)
    assert np.mean(first.losses[2:]) < np.mean(first.losses[:2])
    assert (out / "checkpoints" / "step-0000002").is_dir()

    resumed = StageTrainer(
        0, cfg, build_model("tiny", 0), _instances(), out, backend="deepspeed", show_progress=False
    )
    assert resumed.resume(tag="step-0000002") and resumed.step == 2
    rest = resumed.train(export=False)
    assert rest.losses == pytest.approx(first.losses[2:], rel=1e-4)
    logged = [r["step"] for r in read_log(out)]
    assert logged == [1, 2, 3, 4, 3, 4]  # the journal keeps both runs' records


def _train_cli(launcher: list[str], out, store, config) -> None:
    """`chexagent train` in fresh processes, as a user launches it (torchrun for several)."""
    rendezvous = {"MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in rendezvous}  # this process's group
    env |= {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    args = [
        "-m",
        "chexagent.cli",
        "train",
        "--stage",
        "0",
        "--config",
        str(config),
        "--data",
        str(store),
        "--output",
        str(out),
        "--backend",
        "deepspeed",
        "--save-every",
        "0",
        "--threads",
        "1",
    ]
    done = subprocess.run(
        [sys.executable, *launcher, *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _two_ranks(launcher: str) -> list[str]:
    """The two launchers the docs name, each starting 2 CPU ranks on a free port."""
    if launcher == "torchrun":
        return [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
        ]
    return [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        "--main_process_port",
        str(free_port()),
    ]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_zero2_two_gloo_processes_train_like_one(tmp_path, launcher):
    """Two data-parallel ranks (torchrun or `accelerate launch`, gloo, ZeRO-2 partitioning the
    optimizer state) with one micro-batch each reach the same weights and log the same
    global-batch loss as one process accumulating both micro-batches."""
    from safetensors.torch import load_file

    from chexagent.instruct.store import write_store

    store = tmp_path / "store"
    write_store(store, _instances())
    stage = (
        load_config("tiny")
        .stages[0]
        .model_copy(update={"max_steps": 3, "micro_batch": 2, "global_batch": 4, "warmup_steps": 1})
    )
    config = tmp_path / "zero2.yaml"
    config.write_text(
        yaml.safe_dump({"arch": "tiny", "seed": 0, "stages": {0: stage.model_dump(mode="json")}})
    )
    _train_cli([], tmp_path / "one", store, config)
    _train_cli(_two_ranks(launcher), tmp_path / "two", store, config)
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    w1 = load_file(tmp_path / "one" / "model" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "model" / "model.safetensors")
    trained = [k for k in w1 if k.startswith("language_model.")]
    assert trained and w1.keys() == w2.keys()
    moved = build_model("tiny", 0).model.state_dict()
    assert any(not torch.equal(w1[k], moved[k]) for k in trained)  # training changed the LM
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-6), k
