"""Named training configurations (chexagent/configs/<name>.yaml) and the DeepSpeed JSON they
generate. Table 8's fixed choices (AdamW betas/eps, weight decay, clipping, cosine schedule)
are constants here, not per-config knobs, so every config is Table 8-shaped."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.05
GRAD_CLIP = 1.0

TrainablePart = Literal[
    "language_model",
    "language_projection",
    "qformer",
    "query_tokens",
    "vision_lora",
    "stage1_heads",
    "vision_model",
]


class StageConfig(BaseModel):
    lr_peak: float
    lr_min: float
    global_batch: int = Field(gt=0)
    micro_batch: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    precision: Literal["bf16", "fp32"] = "bf16"
    zero_stage: int | None = None
    max_steps: int = Field(gt=0)
    warmup_steps: int = Field(ge=0, default=0)
    lora_rank: int = 16
    lora_alpha: int = 32
    trainable: list[TrainablePart]
    itc_weight: float = 1.0  # stage 1: loss = itc_weight * ITC + IC

    @model_validator(mode="after")
    def _batches_divide(self) -> StageConfig:
        if self.global_batch % self.micro_batch:
            raise ValueError(
                f"global_batch {self.global_batch} is not a multiple of "
                f"micro_batch {self.micro_batch}"
            )
        return self

    def accumulation(self, world_size: int = 1) -> int:
        per_step = self.micro_batch * world_size
        if self.global_batch % per_step:
            raise ValueError(
                f"global_batch {self.global_batch} is not divisible by micro_batch "
                f"{self.micro_batch} x world size {world_size}"
            )
        return self.global_batch // per_step


class VisionWarmupConfig(BaseModel):
    """Demo-only supervised ViT warm-up before stage 1 (see training/vision_warmup.py), on the
    same warmup + cosine schedule shape as the stages."""

    lr_peak: float = 1e-3
    lr_min: float = 1e-4
    warmup_steps: int = Field(ge=0, default=50)
    batch: int = Field(gt=0, default=32)
    max_steps: int = Field(gt=0, default=1500)
    min_count: int = Field(gt=0, default=20)  # a caption phrase must label this many images


class TrainConfig(BaseModel):
    name: str = ""
    arch: str
    seed: int = 0
    stages: dict[int, StageConfig]
    vision_warmup: VisionWarmupConfig | None = None  # None: stage 1 starts from the init


def load_config(name_or_path: str) -> TrainConfig:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"training config {name_or_path!r} not found; named configs: "
            f"{known}, or pass a YAML path"
        )
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return TrainConfig(name=path.stem, **raw)


def deepspeed_config(stage: StageConfig, world_size: int = 1) -> dict[str, Any]:
    """The ZeRO config for one stage. The optimizer and LR schedule are built in Python (AdamW +
    cosine to lr_min) and handed to `deepspeed.initialize`, so they match the non-DeepSpeed path
    exactly; DeepSpeed owns accumulation, clipping, precision and ZeRO partitioning."""
    if stage.zero_stage is None:
        raise ValueError(
            "this stage has no zero_stage in its config (Table 8 runs ZeRO-2 for "
            "stages 0 and 3 only)"
        )
    return {
        "train_batch_size": stage.global_batch,
        "train_micro_batch_size_per_gpu": stage.micro_batch,
        "gradient_accumulation_steps": stage.accumulation(world_size),
        "gradient_clipping": GRAD_CLIP,
        "bf16": {"enabled": stage.precision == "bf16"},
        "zero_optimization": {
            "stage": stage.zero_stage,
            "overlap_comm": False,
            "contiguous_gradients": True,
        },
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
