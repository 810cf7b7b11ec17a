"""`chexbench reader-study export|analyze`: the paper's radiologist reader study (Figure 4).

`export` turns finished runs into blinded packets for radiologists (CSV + HTML per reader, a
REDCap dictionary and template) and a key kept apart; `analyze` reads the filled packets or a
REDCap export back through the key. See docs/reader-study.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import args as common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reader-study",
        help="blinded radiologist reader study: export packets, analyze ratings",
        description="The CheXagent paper's reader study (section 6, Figure 4) for any model: "
        "export blinded A/B packets, then analyze the returned ratings. See "
        "docs/reader-study.md.",
    )
    rs = p.add_subparsers(dest="reader_study_command", required=True)

    e = rs.add_parser(
        "export",
        help="blinded packets, REDCap kit and key from finished runs",
        description="Select items, scrub unblinding cues, assign sides and write "
        "per-reader packets, a REDCap dictionary + import template, "
        "the key (keep it away from readers) and a manifest.",
    )
    e.add_argument(
        "--runs",
        nargs="+",
        required=True,
        metavar="RUN",
        help="one run folder or results.json (model vs physician reference), or two "
        "(model vs model; the first is the one positive scores favour)",
    )
    e.add_argument(
        "--task",
        required=True,
        choices=["findings_generation", "findings_summarization"],
        help="which text task's reports the readers compare",
    )
    e.add_argument(
        "--n", type=common.positive_int, default=20, help="items in the study (paper: 20)"
    )
    e.add_argument(
        "--readers", type=common.positive_int, default=5, help="number of readers (paper: 5)"
    )
    e.add_argument(
        "--seed", type=common.seed_int, required=True, help="study seed (selection, sides, order)"
    )
    e.add_argument(
        "--output", "-o", type=Path, required=True, help="folder for packets/, redcap/, key/"
    )
    e.add_argument("--out", action=common.DeprecatedAlias, new="--output", dest="output", type=Path)
    e.add_argument(
        "--stratify",
        choices=["none", "dataset", "score"],
        default="none",
        help="stratified selection: by dataset, or by the model's automatic score "
        "(above / at-or-below the median of --score-metric)",
    )
    e.add_argument(
        "--score-metric",
        default="rougeL",
        help="per-sample metric used by --stratify score (default rougeL)",
    )
    e.add_argument(
        "--data", default=None, help="data.json the runs used (default: the run card's data_file)"
    )
    e.add_argument(
        "--image-root",
        default=None,
        help="folder the image paths are relative to (default: data.json's folder)",
    )
    e.add_argument("--image-map", default=None, help="YAML prefix/source map (see chexbench run)")
    e.add_argument(
        "--no-thumbnails",
        action="store_true",
        help="do not embed images (e.g. when the images are shown another way)",
    )
    e.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing study in --output, and export a practice study "
        "from a synthetic-data or random-weight (smoke) run, which is refused "
        "otherwise (its packets then carry a warning banner)",
    )
    e.set_defaults(func=run_export)

    a = rs.add_parser(
        "analyze",
        help="un-blind ratings with the key: Figure 4 + results JSON",
        description="Validate the filled packets (or a REDCap raw export), map "
        "answers to -10..10 scores and report means with two-way "
        "bootstrap CIs, Krippendorff's alpha and Kendall's tau "
        "against the automatic metrics.",
    )
    a.add_argument(
        "--key",
        nargs="+",
        required=True,
        type=Path,
        help="key/key.json of the study (one per task for a two-row Figure 4)",
    )
    a.add_argument(
        "--ratings",
        nargs="+",
        required=True,
        type=Path,
        help="filled packet CSVs (or the HTML page's download), or a REDCap export",
    )
    common.add_output(
        p=a,
        default=Path("results/reader_study"),
        type=Path,
        help="folder for reader_study.json, reader_study.png, scores.csv",
    )
    common.add_bootstrap(a)
    common.add_seed(a)
    a.set_defaults(func=run_analyze)


def run_export(args: argparse.Namespace) -> int:
    from harness.reader_study.export import ExportConfig, write_export

    key = write_export(
        ExportConfig(
            runs=[str(r) for r in args.runs],
            task=args.task,
            n=args.n,
            readers=args.readers,
            seed=args.seed,
            out=args.output,
            stratify=args.stratify,
            score_metric=args.score_metric,
            data=args.data,
            image_root=args.image_root,
            image_map=args.image_map,
            thumbnails=not args.no_thumbnails,
            force=args.force,
        )
    )
    import json

    log = json.loads((args.output / "key" / "scrub_log.json").read_text(encoding="utf-8"))
    sides = [s for it in log["items"] for s in (it["x"], it["y"])]
    changes = sum(len(s["changes"]) for s in sides)
    prior = sum(1 for s in sides if any(f["rule"] == "prior_reference" for f in s["flags"]))
    blanks = sum(
        1 for s in sides if any(f["rule"] == "deidentification_placeholder" for f in s["flags"])
    )
    print(
        f"study {key['study_id']}: {key['n_items']} items x {len(key['readers'])} readers, "
        f"X on side A {key['balance']['x_on_A']} / B {key['balance']['x_on_B']}"
    )
    print(f"packets: {args.output / 'packets'}  REDCap: {args.output / 'redcap'}")
    print(
        f"scrubber: {changes} edits; flagged in key/scrub_log.json: {prior} texts still refer "
        f"to a prior study, {blanks} hold de-identification blanks (___)"
    )
    print(f"key: {args.output / 'key' / 'key.json'} (un-blinds the study: keep it from readers)")
    if key["demo_warning"]:
        print(f"warning: {key['demo_warning']} (shown on every packet)")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from harness.io import atomic_write_text
    from harness.reader_study.packets import to_csv
    from harness.reader_study.plot import write_figure
    from harness.reader_study.ratings import load_key, read_ratings
    from harness.reader_study.report import build_results
    from harness.results_io import write_results

    keys = [load_key(k) for k in args.key]
    ratings = read_ratings(list(args.ratings), keys)
    model, frame = build_results(
        keys, ratings, args.bootstrap_samples, args.seed, [*args.key, *args.ratings]
    )
    out = args.output
    write_results(model, out / "reader_study.json")
    results = model.model_dump(mode="json")
    # Readers' comments are free text: the study's one CSV writer keeps formulas inert.
    cells = frame.astype(object).where(frame.notna(), "").astype(str)
    atomic_write_text(out / "scores.csv", to_csv([list(frame.columns), *cells.values.tolist()]))
    write_figure(results["reader_study"]["tasks"], out / "reader_study.png")
    for task, t in results["reader_study"]["tasks"].items():
        print(
            f"{task}: {t['n_items']} items x {t['n_readers']} readers ({t['x']} vs {t['y']}; "
            "positive favours the first)"
        )
        for attr, m in t["attributes"].items():
            alpha = t["krippendorff_alpha"][attr]["value"]
            alpha_s = f"{alpha:.2f}" if alpha is not None else "n/a"
            print(
                f"  {attr:<13} {m['value']:+6.2f}  95% CI [{m['ci'][0]:+.2f}, "
                f"{m['ci'][1]:+.2f}]  alpha {alpha_s}"
            )
    print(f"wrote {out / 'reader_study.json'}, {out / 'reader_study.png'}, {out / 'scores.csv'}")
    return 0
