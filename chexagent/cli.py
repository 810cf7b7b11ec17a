"""`chexagent`: build CheXinstruct, train a stage, run the demo recipe, score a checkpoint.

    chexagent data build --out DIR --source chexpert=/data/CheXpert-v1.0 ... \
        [--benchmark data.json --image-root DIR] [--ratio "(Task)Dataset=R"]
    chexagent train --stage {0,1,2,3} --config tiny|paper|demo|FILE.yaml --data STORE \
        --out DIR [--init CHECKPOINT] [--backend torch|deepspeed] [--resume]
        [--init-vision BLIP2 --init-qformer BERT --init-lm CAUSAL_LM [--trust-remote-code]]
    chexagent demo-train [--work DIR] [--out chexagent/assets/demo-model] [--config demo]
    chexagent eval --model DIR --data data.json

Multi-GPU / multi-node: `deepspeed --module chexagent.cli train ... --backend deepspeed` or
`accelerate launch -m chexagent.cli train ... --backend deepspeed`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands import args as common
from harness.errors import UserError, one_line


def _cmd_data_build(args: argparse.Namespace) -> int:
    from chexagent.instruct.build import build, parse_ratios, parse_sources

    summary = build(
        Path(args.output),
        parse_sources(args.source),
        seed=args.seed,
        benchmarks=args.benchmark,
        ratio_overrides=parse_ratios(args.ratio),
        image_root=args.image_root,
        image_map=args.image_map,
        shard_size=args.shard_size,
    )
    print(json.dumps(summary, indent=2))
    print(f"report: {Path(args.output) / 'report.md'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from chexagent.instruct.store import InstanceStore
    from chexagent.modeling import build_model, load_bundle
    from chexagent.training.config import load_config
    from chexagent.training.trainer import StageTrainer

    cfg = load_config(args.config)
    stage_cfg = cfg.stages[args.stage]
    if args.max_steps:
        stage_cfg = stage_cfg.model_copy(update={"max_steps": args.max_steps})
    seed = cfg.seed if args.seed is None else args.seed
    parts = {"vision": args.init_vision, "qformer": args.init_qformer, "lm": args.init_lm}
    if args.init:
        if any(parts.values()):
            raise UserError(
                "--init continues a CheXagent checkpoint; --init-vision/"
                "--init-qformer/--init-lm start a fresh model: pass one or the other"
            )
        bundle = load_bundle(args.init)
    else:
        bundle = build_model(cfg.arch, seed=seed, qformer_text_input=True)
        if any(parts.values()):
            from chexagent.pretrained import init_from_pretrained

            print(
                json.dumps(
                    init_from_pretrained(bundle, **parts, trust_remote_code=args.trust_remote_code),
                    indent=2,
                )
            )
    backend = args.backend or ("deepspeed" if stage_cfg.zero_stage is not None else "torch")
    trainer = StageTrainer(
        args.stage,
        stage_cfg,
        bundle,
        list(InstanceStore(args.data)),
        args.output,
        seed=seed,
        backend=backend,
        save_every=args.save_every,
    )
    if args.resume and trainer.resume():
        print(f"resumed at step {trainer.step}")
    result = trainer.train()
    print(
        f"stage {args.stage}: {len(result.losses)} steps, loss "
        f"{result.losses[0] if result.losses else float('nan'):.4f} -> "
        f"{result.losses[-1] if result.losses else float('nan'):.4f}; model: {result.model_dir}"
    )
    return 0


def _cmd_demo_train(args: argparse.Namespace) -> int:
    from chexagent.demo import demo_train

    given = {
        k: v
        for k, v in (
            ("out_model", args.output),
            ("n_per_pair", args.n_per_pair),
            ("config", args.config),
        )
        if v is not None
    }
    # unset options take demo_train's defaults: the shipped recipe, written where it ships
    summary = demo_train(args.work, seed=args.seed, fresh=args.fresh, **given)
    print(
        json.dumps({k: summary[k] for k in ("timings_s", "test_accuracy", "model_dir")}, indent=2)
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from chexagent.evaluate import evaluate_data
    from chexagent.modeling import load_bundle

    print(
        json.dumps(evaluate_data(load_bundle(args.model), args.data, show_progress=True), indent=2)
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chexagent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="CheXinstruct").add_subparsers(
        dest="data_cmd", required=True
    )
    b = data.add_parser("build", help="build the instance store, the stage-3 mix and the report")
    b.add_argument("--output", "-o", required=True, help="folder for the instance store")
    b.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output")
    b.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=DIR",
        required=True,
        help="a source data set and its folder, e.g. phantom=DIR (repeatable)",
    )
    b.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="DATA_JSON",
        help="CheXbench data.json whose images must not be trained on (repeatable)",
    )
    b.add_argument("--image-root", help="where the benchmark's relative image paths live")
    b.add_argument("--image-map", help="YAML prefix/source map (as chexbench run)")
    b.add_argument(
        "--ratio",
        action="append",
        default=[],
        metavar="(Task)Dataset=R",
        help="sampling ratio for a pair missing from Table 7",
    )
    b.add_argument(
        "--seed",
        type=common.seed_int,
        default=0,
        help="seed of the instance sampling and mixing (default %(default)s)",
    )
    b.add_argument(
        "--shard-size",
        type=common.positive_int,
        default=50_000,
        help="instances per store shard (default %(default)s)",
    )
    b.set_defaults(func=_cmd_data_build)

    t = sub.add_parser("train", help="run one training stage")
    t.add_argument(
        "--stage",
        type=int,
        choices=(0, 1, 2, 3),
        required=True,
        help="training stage (paper Table 8)",
    )
    t.add_argument(
        "--config",
        default="tiny",
        help="training config: a name in chexagent/configs or a YAML path",
    )
    t.add_argument("--data", required=True, help="an instance store folder (index.json)")
    t.add_argument("--output", "-o", required=True, help="folder for the stage's checkpoint")
    t.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output")
    t.add_argument("--init", help="checkpoint of the previous stage (default: fresh model)")
    t.add_argument(
        "--init-vision",
        metavar="HUB_ID|DIR",
        help="fresh model: the ViT of a transformers BLIP-2 checkpoint (e.g. "
        "Salesforce/blip2-opt-2.7b) or Blip2VisionModel, resized to the image size",
    )
    t.add_argument(
        "--init-qformer",
        metavar="HUB_ID|DIR",
        help="fresh model: BERT (e.g. bert-base-uncased) into the Q-Former as BLIP-2 "
        "did (cross-attention and queries new)",
    )
    t.add_argument(
        "--init-lm",
        metavar="HUB_ID|DIR",
        help="fresh model: a causal LM (e.g. mistralai/Mistral-7B-v0.1) and its "
        "tokenizer, plus <image>",
    )
    t.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let --init-lm run code shipped with the checkpoint",
    )
    t.add_argument(
        "--backend", choices=("torch", "deepspeed"), help="training loop (default: the config's)"
    )
    t.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --output"
    )
    t.add_argument(
        "--save-every",
        type=common.non_negative_int,
        default=100,
        help="steps between checkpoints; 0: only at the end (default %(default)s)",
    )
    t.add_argument(
        "--max-steps",
        type=common.positive_int,
        help="stop after this many steps (default: the config's)",
    )
    t.add_argument("--seed", type=common.seed_int, help="training seed (default: the config's)")
    t.add_argument(
        "--threads", type=common.positive_int, help="CPU threads for torch (default: torch's)"
    )
    t.add_argument(
        "--local_rank", type=common.non_negative_int, help=argparse.SUPPRESS
    )  # set by deepspeed
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("demo-train", help="train the shipped demo model on phantom data")
    d.add_argument(
        "--work",
        default="runs/demo-train",
        help="folder for the phantom data and the stages (default %(default)s)",
    )
    d.add_argument(
        "--output",
        "-o",
        default=None,
        help="where the trained model goes (default: chexagent/assets/demo-model)",
    )
    d.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output")
    d.add_argument(
        "--seed", type=common.seed_int, default=0, help="training seed (default %(default)s)"
    )
    d.add_argument(
        "--n-per-pair",
        type=common.positive_int,
        help="phantom training items per task/dataset pair (default: the recipe's 400)",
    )
    d.add_argument(
        "--config", help="training config name or YAML (default: demo, the shipped recipe)"
    )
    d.add_argument(
        "--threads",
        type=common.positive_int,
        default=1,
        help="CPU threads for torch. Default 1: on a shared 2-core machine two "
        "threads ran a stage-1 step 20x slower than one (docs/training.md)",
    )
    d.add_argument("--fresh", action="store_true", help="ignore finished steps in --work")
    d.set_defaults(func=_cmd_demo_train)

    e = sub.add_parser("eval", help="multiple-choice accuracy of a checkpoint on a data.json")
    e.add_argument("--model", required=True, help="a checkpoint folder written by this package")
    e.add_argument("--data", required=True, help="a CheXbench data.json")
    e.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
