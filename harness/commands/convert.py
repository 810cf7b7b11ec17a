"""`chexbench convert`: turn a released checkpoint into the transformers layout an adapter loads."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert released LLaVA-Med / XrayGPT weights",
        description="Convert a released checkpoint (original key names) into a "
        "transformers folder; every key must map, or nothing is written.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)

    llava = kinds.add_parser(
        "llava-med",
        help="LLaVA-Med (v0 LLaMA, the paper's, or v1.5 "
        "Mistral; the variant is recorded) -> LlavaForConditionalGeneration",
    )
    llava.add_argument(
        "src", help="folder of the released checkpoint (config.json, weights, tokenizer)"
    )
    llava.add_argument("dst", help="new folder to write (pass it as pretrained=DST)")
    llava.add_argument(
        "--vision-tower",
        help="CLIP folder, for checkpoints that do not carry "
        "the vision tower (LLaVA-Med v0: openai/clip-vit-large-patch14)",
    )
    llava.set_defaults(func=run)

    xray = kinds.add_parser(
        "xraygpt",
        help="XrayGPT (MiniGPT-4 layout) -> Blip2ForConditionalGeneration with a LLaMA decoder",
    )
    xray.add_argument(
        "src",
        help="folder holding eva_vit_g.pth, blip2_pretrained_flant5xxl.pth, "
        "xraygpt_pretrained1.pth and Vicuna_Radiology_fp16/",
    )
    xray.add_argument("dst", help="new folder to write (pass it as pretrained=DST)")
    xray.add_argument("--vit", help="EVA ViT-g weights (default SRC/eva_vit_g.pth)")
    xray.add_argument(
        "--qformer", help="BLIP-2 Q-Former weights (default SRC/blip2_pretrained_flant5xxl.pth)"
    )
    xray.add_argument(
        "--checkpoint", help="XrayGPT checkpoint (default SRC/xraygpt_pretrained1.pth)"
    )
    xray.add_argument("--llama", help="Vicuna folder (default SRC/Vicuna_Radiology_fp16)")
    xray.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kind == "llava-med":
        from model_adapters.converters.llava_med import convert_llava_med

        manifest = convert_llava_med(args.src, args.dst, vision_tower=args.vision_tower)
        model = manifest["adapter"]  # llava_med (v0, the paper's) or llava_med_v15
    else:
        from model_adapters.converters.xraygpt import convert_xraygpt

        manifest = convert_xraygpt(
            args.src,
            args.dst,
            vit=args.vit,
            qformer=args.qformer,
            checkpoint=args.checkpoint,
            llama=args.llama,
        )
        model = "xraygpt"
    print(json.dumps({k: v for k, v in manifest.items() if k != "discarded"}, indent=2))
    print(
        f"wrote {args.dst}; evaluate with: chexbench run --model {model} "
        f"--model-args pretrained={args.dst} ..."
    )
    return 0
