"""`chexbench fairness-set`: the paper's section 7 fairness set from the real CheXpert files.

A separate command rather than `chexbench fairness build-chexpert`: `chexbench fairness` takes
the run as its first positional argument, and argparse cannot put a sub-command beside it
without breaking `chexbench fairness RUN`.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from harness.commands import args as common
from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fairness-set",
        help="build the paper's fairness set (section 7) from CheXpert test labels + demographics",
        description="Write the cardiomegaly Yes/No items of the paper's fairness evaluation "
        "(CheXpert test, frontal films, one study per subject, certain 'Cardiomegaly' or 'No "
        "Finding' labels, Asian/Black/White subjects) as a CheXbench data.json, and the "
        "demographics CSV `chexbench fairness` reads. See docs/statistics.md.",
    )
    p.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="CheXlocalize's CheXpert/test_labels.csv (Path per image); also CheXpert's "
        "valid.csv layout, or groundtruth.csv (Study per study, needs --image-dir)",
    )
    p.add_argument(
        "--demographics",
        type=Path,
        required=True,
        help="'CHEXPERT DEMO.xlsx' (needs openpyxl) or its CSV export: PATIENT, GENDER, "
        "AGE_AT_CXR, PRIMARY_RACE",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="the data.json to write")
    p.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output", type=Path)
    p.add_argument(
        "--demographics-out",
        type=Path,
        default=None,
        help="the demographics CSV to write (default: <output stem>-demographics.csv beside --output)",
    )
    p.add_argument(
        "--image-dir",
        type=Path,
        default=None,
        help="CheXpert test image folder (patientN/studyN/viewK_*.jpg); only for per-study labels",
    )
    p.add_argument(
        "--negatives",
        choices=("no-finding", "no-cardiomegaly"),
        default="no-finding",
        help="'No' items: studies labelled No Finding (the paper, default) or any Cardiomegaly=0",
    )
    p.add_argument(
        "--image-prefix",
        default="data/chexpert-public",
        help="folder the image paths start with (default: the official data.json's "
        "data/chexpert-public; map it to your copy with --image-map at run time)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.fairness.chexpert_set import SUBTASK, build_fairness_set, write_fairness_set

    out = args.output
    demographics_out = args.demographics_out or out.with_name(f"{out.stem}-demographics.csv")
    inputs = {p.resolve() for p in (args.labels, args.demographics)}
    for target in (out, demographics_out):
        if target.resolve() in inputs:
            raise UserError(f"{target}: refusing to overwrite an input file; choose another path")
    if out.resolve() == demographics_out.resolve():
        raise UserError(f"{out}: --output and --demographics-out must differ")
    fs = build_fairness_set(
        args.labels,
        args.demographics,
        image_dir=args.image_dir,
        negatives=args.negatives,
        image_prefix=args.image_prefix,
    )
    write_fairness_set(fs, out, demographics_out)
    answers = Counter(item[f"option_{item['answer']}"] for item in fs.items)
    races = Counter(row["race"] for row in fs.demographics)
    print(
        f"fairness set: {len(fs.items)} subjects ({answers['Yes']} Yes / {answers['No']} No); "
        f"race {dict(sorted(races.items()))}"
    )
    for reason, count in fs.excluded.items():
        print(f"  left out: {count} {reason}")
    print(f"wrote {out} and {demographics_out}; next:")
    print(
        f"  chexbench run --model M --data {out} --tasks {SUBTASK.name} "
        "--image-root DIR [--image-map YAML]"
    )
    print(f"  chexbench fairness RUN/results.json --demographics {demographics_out}")
    return 0
