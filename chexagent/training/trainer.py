"""One training stage: AdamW + warmup/cosine (Table 8), gradient accumulation to the global
batch, clipping, periodic checkpoints that resume bit-for-bit, and a JSONL loss log.

Two back ends run the same objective on the same batches: plain PyTorch (single process) and
DeepSpeed ZeRO (stages 0 and 3 in Table 8; `deepspeed`/`accelerate launch` for many GPUs).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from chexagent.forward import lm_logits, next_token_loss
from chexagent.instruct.schema import Instance
from chexagent.modeling import CheXagentBundle, save_bundle
from chexagent.prompting import build_inputs
from chexagent.training.config import (
    ADAM_BETAS,
    ADAM_EPS,
    GRAD_CLIP,
    WEIGHT_DECAY,
    StageConfig,
    VisionWarmupConfig,
)
from chexagent.training.data import (
    BatchSchedule,
    ImageLoader,
    QueryCache,
    collate_captions,
    collate_prompted,
    collate_text,
    stage_examples,
)
from chexagent.training.parts import (
    Stage1Heads,
    apply_vision_lora,
    has_lora,
    itc_ic_loss,
    merge_vision_lora,
    set_trainable,
)
from harness.io import AppendLog, atomic_write_json, read_jsonl

LOG_FILE = "train_log.jsonl"


class StageObjective(nn.Module):
    """The stage's loss as a module, so DeepSpeed can wrap it like any model."""

    def __init__(
        self,
        stage: int,
        bundle: CheXagentBundle,
        heads: Stage1Heads | None,
        itc_weight: float = 1.0,
    ):
        super().__init__()
        self.stage = stage
        self.model = bundle.model
        self.heads = heads
        self.itc_weight = itc_weight
        self.last_parts: dict[str, float] = {}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.stage == 0:
            out = self.model.language_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
            return next_token_loss(out.logits, batch["labels"])
        if self.stage == 1:
            loss, self.last_parts = itc_ic_loss(
                self.model,
                self.heads,
                batch["pixel_values"],
                batch["text_ids"],
                batch["text_mask"],
                self.itc_weight,
            )
            return loss
        logits = lm_logits(
            self.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            batch.get("cached_queries"),
        )
        return next_token_loss(logits, batch["labels"])


def cosine_schedule(cfg: StageConfig | VisionWarmupConfig) -> Callable[[int], float]:
    """Table 8's schedule: linear warm-up to lr_peak, then cosine down to lr_min."""
    floor = cfg.lr_min / cfg.lr_peak

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(params: list[nn.Parameter], cfg: StageConfig) -> torch.optim.Optimizer:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases, norms, temperature: no decay
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr_peak,
        betas=ADAM_BETAS,
        eps=ADAM_EPS,
    )


@dataclass
class StageResult:
    losses: list[float] = field(default_factory=list)  # one per optimizer step, this run
    steps_done: int = 0
    model_dir: Path | None = None
    seconds: float = 0.0


def _collate(
    stage: int,
    bundle: CheXagentBundle,
    images: ImageLoader,
    cfg: StageConfig,
    examples: list[Instance],
    cache_queries: bool = True,
):
    frozen_vision = not (
        {"vision_model", "vision_lora", "qformer", "query_tokens"} & set(cfg.trainable)
    )
    if stage in (2, 3) and frozen_vision and cache_queries:
        images = QueryCache(bundle.model, images)
        images.warm(p for inst in examples for p in inst.images[: bundle.arch.max_images])
    if stage == 0:
        return lambda ex: collate_text(bundle.tokenizer, ex, cfg.seq_len)
    if stage == 1:
        return lambda ex: collate_captions(bundle.tokenizer, images, ex, cfg.seq_len)
    return lambda ex: collate_prompted(
        bundle.tokenizer,
        images,
        ex,
        cfg.seq_len,
        bundle.arch.num_query_tokens,
        bundle.arch.max_images,
    )


def _trainable_state(objective: StageObjective) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone().contiguous()
        for n, p in objective.named_parameters()
        if p.requires_grad
    }


def _rng_state() -> dict[str, torch.Tensor]:
    return {"torch": torch.get_rng_state()}


class StageTrainer:
    def __init__(
        self,
        stage: int,
        cfg: StageConfig,
        bundle: CheXagentBundle,
        instances: list[Instance],
        out_dir: str | Path,
        seed: int = 0,
        backend: str = "torch",
        save_every: int = 0,
        heads: Stage1Heads | None = None,
        show_progress: bool = True,
        cache_queries: bool = True,
    ):
        if stage not in (0, 1, 2, 3):
            raise ValueError(f"stage must be 0-3, got {stage}")
        self.stage, self.cfg, self.bundle, self.seed = stage, cfg, bundle, seed
        self.out_dir = Path(out_dir)
        self.backend = backend
        self.save_every = save_every
        self.show_progress = show_progress
        self.examples = stage_examples(stage, instances)
        self.too_long: list[str] = []
        if stage in (2, 3):
            self.examples = self._fitting(self.examples, bundle, cfg.seq_len)
        if not self.examples:
            raise ValueError(
                f"stage {stage}: the data holds no usable examples "
                "(stages 1-2 need findings/impression instances with images)"
            )
        if stage == 1:
            if "vision_lora" in cfg.trainable and not has_lora(bundle.model.vision_model):
                apply_vision_lora(bundle.model, cfg.lora_rank, cfg.lora_alpha)
            torch.manual_seed(seed)
            heads = heads or Stage1Heads(bundle.model, text_vocab=len(bundle.tokenizer))
        self.heads = heads
        params = set_trainable(bundle.model, heads, cfg)
        self.objective = StageObjective(stage, bundle, heads, cfg.itc_weight)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.accum = cfg.accumulation(self.world)
        self.schedule = BatchSchedule(len(self.examples), cfg.micro_batch, seed)
        self.collate = _collate(
            stage, bundle, ImageLoader(bundle.image_processor), cfg, self.examples, cache_queries
        )
        self.optimizer = make_optimizer(params, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(cfg))
        self.engine = None
        if backend == "deepspeed":
            self._init_deepspeed(params)
        elif backend != "torch":
            raise ValueError(f"backend must be torch or deepspeed, got {backend!r}")
        elif self.world > 1:  # plain torch has no gradient exchange: ranks would drift apart
            raise ValueError(
                f"WORLD_SIZE={self.world}: multi-process training needs --backend deepspeed"
            )
        self.step = 0

    def _fitting(
        self, examples: list[Instance], bundle: CheXagentBundle, seq_len: int
    ) -> list[Instance]:
        """Drop (and record) instances whose prompt alone exceeds the sequence length: a cut
        prompt would teach an answer to a question the model never saw whole."""
        kept = []
        for inst in examples:
            n = len(
                build_inputs(
                    bundle.tokenizer,
                    inst.question,
                    None,
                    num_images=len(inst.images[: bundle.arch.max_images]),
                    num_query_tokens=bundle.arch.num_query_tokens,
                ).input_ids
            )
            if n < seq_len:
                kept.append(inst)
            else:
                self.too_long.append(inst.instance_id)
        if self.too_long:
            tqdm.write(
                f"stage {self.stage}: skipped {len(self.too_long)} instance(s) whose "
                f"prompt exceeds seq_len={seq_len} (e.g. {self.too_long[0]})"
            )
        return kept

    # ---- back ends -------------------------------------------------------------------------
    def _init_deepspeed(self, params: list[nn.Parameter]) -> None:
        import deepspeed

        from chexagent.training.config import deepspeed_config
        from harness.multiprocess import free_port

        if not torch.distributed.is_initialized():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))  # runs side by side
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("LOCAL_RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            deepspeed.init_distributed(dist_backend=backend)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.objective,
            optimizer=self.optimizer,
            lr_scheduler=self.scheduler,
            model_parameters=params,
            config=deepspeed_config(self.cfg, self.world),
        )

    def _micro_batch(self, k: int) -> dict[str, Any]:
        global_k = k * self.world + self.rank
        return self.collate([self.examples[i] for i in self.schedule.indices(global_k)])

    def _autocast(self):
        enabled = self.cfg.precision == "bf16" and self.engine is None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.engine is None:
            return batch
        dev = self.engine.device
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else None
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(dev)
                if dtype is not None and v.is_floating_point():
                    v = v.to(dtype)
            out[k] = v
        return out

    def train_step(self) -> float:
        total = 0.0
        if self.engine is None:
            self.optimizer.zero_grad(set_to_none=True)
            for a in range(self.accum):
                with self._autocast():
                    loss = self.objective(self._micro_batch(self.step * self.accum + a))
                (loss / self.accum).backward()
                total += float(loss.detach()) / self.accum
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            self.optimizer.step()
            self.scheduler.step()
        else:
            for a in range(self.accum):
                batch = self._to_device(self._micro_batch(self.step * self.accum + a))
                loss = self.engine(batch)
                self.engine.backward(loss)
                self.engine.step()
                total += float(loss.detach().float()) / self.accum
            if self.world > 1:  # the logged loss is the global batch's, as one process logs it
                mean = torch.tensor([total / self.world], device=self.engine.device)
                torch.distributed.all_reduce(mean)
                total = float(mean)
        self.step += 1
        return total

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        tag = f"step-{self.step:07d}"
        state = {"step": self.step, "stage": self.stage, "seed": self.seed, "backend": self.backend}
        if self.engine is not None:
            self.engine.save_checkpoint(
                str(self.ckpt_root), tag=tag, client_state={"trainer": state, "rng": _rng_state()}
            )
            final = self.ckpt_root / tag
        else:
            tmp = self.ckpt_root / f".{tag}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_file(_trainable_state(self.objective), tmp / "trainable.safetensors")
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": _rng_state(),
                },
                tmp / "optimizer.pt",
            )
            (tmp / "trainer_state.json").write_text(json.dumps(state))
            final = self.ckpt_root / tag
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        atomic_write_json(self.ckpt_root / "latest.json", {"tag": tag, **state})
        return final

    def resume(self, tag: str | None = None) -> bool:
        """Continue from the latest (or the named) checkpoint in out_dir; False when none."""
        latest = self.ckpt_root / "latest.json"
        if not latest.is_file():
            return False
        info = json.loads(latest.read_text())
        if tag is not None:
            info = {**info, "tag": tag, "step": int(tag.rsplit("-", 1)[1])}
        if info["stage"] != self.stage or info["backend"] != self.backend:
            raise ValueError(
                f"{latest}: checkpoint is stage {info['stage']} / {info['backend']}, "
                f"this run is stage {self.stage} / {self.backend}"
            )
        if self.engine is not None:
            _, client = self.engine.load_checkpoint(str(self.ckpt_root), tag=info["tag"])
            rng = client["rng"]
        else:
            folder = self.ckpt_root / info["tag"]
            weights = load_file(folder / "trainable.safetensors")
            missing = set(_trainable_state(self.objective)) - set(weights)
            if missing:
                raise ValueError(f"{folder}: checkpoint lacks {sorted(missing)[:3]}...")
            self.objective.load_state_dict(weights, strict=False)
            opt = torch.load(folder / "optimizer.pt", weights_only=True)
            self.optimizer.load_state_dict(opt["optimizer"])
            self.scheduler.load_state_dict(opt["scheduler"])
            rng = opt["rng"]
        torch.set_rng_state(rng["torch"])
        self.step = int(info["step"])
        return True

    # ---- the loop ------------------------------------------------------------------------------
    def train(
        self, max_steps: int | None = None, stop_after: int | None = None, export: bool = True
    ) -> StageResult:
        """Run to `max_steps` (config default). `stop_after` ends early after that many steps
        of this call (a simulated interruption; the checkpoint then lets `resume` go on)."""
        total_steps = max_steps or self.cfg.max_steps
        result = StageResult()
        start = time.perf_counter()
        log = AppendLog(self.out_dir / LOG_FILE) if self.rank == 0 else None
        bar = tqdm(
            total=total_steps,
            initial=self.step,
            desc=f"stage {self.stage}",
            disable=not self.show_progress or self.rank != 0,
            leave=False,
        )
        try:
            while self.step < total_steps:
                loss = self.train_step()
                result.losses.append(loss)
                lr = self.scheduler.get_last_lr()[0]
                if log:
                    log.append(
                        {
                            "stage": self.stage,
                            "step": self.step,
                            "loss": loss,
                            "lr": lr,
                            "elapsed_s": round(time.perf_counter() - start, 3),
                            **self.objective.last_parts,
                        }
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                done_here = len(result.losses)
                if self.save_every and (self.step % self.save_every == 0):
                    self.save_checkpoint()
                if stop_after is not None and done_here >= stop_after:
                    break
        finally:
            bar.close()
            if log:
                log.close()
        result.steps_done = self.step
        result.seconds = time.perf_counter() - start
        if export and self.step >= total_steps and self.rank == 0:
            result.model_dir = self.export()
        return result

    def export(self) -> Path:
        """The stage's output as a loadable CheXagent checkpoint (LoRA merged), plus stage-1
        heads beside it for anyone continuing stage 1."""
        target = self.out_dir / "model"
        if has_lora(self.bundle.model.vision_model):
            merge_vision_lora(self.bundle.model)
        self.bundle.model.requires_grad_(False)
        self.bundle.model.eval()
        save_bundle(
            self.bundle, target, extra={"trained_stage": self.stage, "train_seed": self.seed}
        )
        if self.heads is not None:
            save_file(
                {k: v.contiguous() for k, v in self.heads.state_dict().items()},
                self.out_dir / "stage1_heads.safetensors",
            )
        return target


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(out_dir) / LOG_FILE)
