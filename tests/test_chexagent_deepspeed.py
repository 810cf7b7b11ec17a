"""DeepSpeed ZeRO-2 runs a stage on CPU with the gloo backend (single process), and a run
resumed from its checkpoint continues the uninterrupted run's loss curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chexagent.instruct.schema import Instance
from chexagent.modeling import build_model
from chexagent.training.config import deepspeed_config, load_config
from chexagent.training.trainer import StageTrainer, read_log

deepspeed = pytest.importorskip("deepspeed", reason="pip install --no-build-isolation "
                                "deepspeed==0.19.8 (the Makefile does)")

TEXTS = ["no acute cardiopulmonary process.", "small left pleural effusion.",
         "the heart size is normal.", "moderate cardiomegaly with pulmonary edema.",
         "right-sided pneumothorax.", "lungs are clear."]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Two intra-op threads on a shared 2-core box thrash (20x slower measured); restore after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _instances() -> list[Instance]:
    return [Instance(instance_id=f"t/{i}", task="FindingsSummarization", dataset="Phantom",
                     split="train", question="Summarize the following Findings:", answer=t,
                     template_format="findings_summarization", template_index=0)
            for i, t in enumerate(TEXTS)]


def test_zero2_gloo_stage0_resume_continues_curve(tmp_path):
    cfg = load_config("tiny").stages[0].model_copy(
        update={"max_steps": 4, "micro_batch": 2, "global_batch": 4, "warmup_steps": 1})
    ds = deepspeed_config(cfg)
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 1.0
    out = tmp_path / "run"
    full = StageTrainer(0, cfg, build_model("tiny", 0), _instances(), out, backend="deepspeed",
                        save_every=2, show_progress=False)
    assert type(full.engine.optimizer).__name__ == "DeepSpeedZeroOptimizer"
    first = full.train(export=False)
    assert np.mean(first.losses[2:]) < np.mean(first.losses[:2])
    assert (out / "checkpoints" / "step-0000002").is_dir()

    resumed = StageTrainer(0, cfg, build_model("tiny", 0), _instances(), out,
                           backend="deepspeed", show_progress=False)
    assert resumed.resume(tag="step-0000002") and resumed.step == 2
    rest = resumed.train(export=False)
    assert rest.losses == pytest.approx(first.losses[2:], rel=1e-4)
    logged = [r["step"] for r in read_log(out)]
    assert logged == [1, 2, 3, 4, 3, 4]  # the journal keeps both runs' records
