"""`chexbench phantom`: write the synthetic CheXbench data set (images + official-format JSON)."""

from __future__ import annotations

import argparse

from harness.commands import args as common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a synthetic phantom CheXbench data set",
        description="Write deterministic synthetic chest radiographs with known findings, a "
        "data.json in the official CheXbench format (all 8 tasks, 14 pairs), "
        "fairness.json, demographics.csv and truth.jsonl. Paths in the JSON are "
        "relative to --output, which is therefore the image root.",
    )
    p.add_argument("--output", "-o", required=True, help="output folder")
    p.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output")
    common.add_phantom_size_and_seed(p)
    p.add_argument(
        "--image-size", type=common.positive_int, default=128, help="square image side in pixels"
    )
    p.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="train and test draw disjoint patients for the same seed",
    )
    p.add_argument(
        "--disparity",
        default=None,
        metavar="ATTR=GROUP[:STRENGTH]",
        help="make one subgroup's images harder, e.g. race=Black:0.6",
    )
    p.add_argument(
        "--n-text",
        type=common.non_negative_int,
        default=20,
        help="findings generation and summarization items (each)",
    )
    p.add_argument(
        "--n-fairness",
        type=common.non_negative_int,
        default=200,
        help="cardiomegaly items over distinct CheXpert subjects (fairness.json)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.phantom import Disparity, generate_phantom

    # Bad settings raise UserError subclasses (DisparityError, PhantomError) at the source;
    # any other ValueError is a bug and keeps its traceback.
    disparity = Disparity.parse(args.disparity) if args.disparity else None
    res = generate_phantom(
        args.output,
        n_per_pair=args.n_per_pair,
        seed=args.phantom_seed,
        image_size=args.image_size,
        split=args.split,
        disparity=disparity,
        n_text=args.n_text,
        n_fairness=args.n_fairness,
        progress=True,
    )
    print(
        f"phantom CheXbench ({args.split}, seed {args.phantom_seed}): {res.n_images} images "
        f"in {res.seconds:.1f} s"
    )
    for label, path in (
        ("data", res.data_json),
        ("fairness", res.fairness_json),
        ("demographics", res.demographics_csv),
        ("truth", res.truth_jsonl),
    ):
        print(f"  {label:<13}{path}")
    print(f"  image root   {res.out_dir}")
    return 0
