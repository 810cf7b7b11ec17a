"""OpenI (Indiana University chest X-ray collection), in its widely used CSV release:
`indiana_reports.csv` (uid, MeSH, Problems, image, indication, comparison, findings,
impression) and `indiana_projections.csv` (uid, filename, projection: Frontal/Lateral), images
under `images/images_normalized/<filename>`.

OpenI is held out of CheXagent's training (paper section 4.2); its instances exist for the
test split and for the statistics report, and the mixer drops them from training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from chexagent.instruct.processors.base import InstanceFactory, read_csv
from chexagent.instruct.schema import Instance

NAME = "OpenI"
IMAGE_DIR = Path("images") / "images_normalized"


def _text(value: object) -> str:
    return " ".join(str(value).split()) if isinstance(value, str) else ""


def process(root: Path, seed: int = 0) -> Iterator[Instance]:
    factory = InstanceFactory(NAME, seed)
    reports = read_csv(
        root / "indiana_reports.csv",
        NAME,
        ("uid", "MeSH", "Problems", "indication", "findings", "impression"),
    )
    projections = read_csv(
        root / "indiana_projections.csv", NAME, ("uid", "filename", "projection")
    )
    by_uid = projections.groupby("uid")
    for rec in reports.to_dict("records"):
        uid = rec["uid"]
        if uid not in by_uid.groups:
            continue
        views = by_uid.get_group(uid)
        frontal = views[views["projection"].str.lower() == "frontal"]
        ordered = pd.concat([frontal, views.drop(frontal.index)])
        images = [str(root / IMAGE_DIR / f) for f in ordered["filename"]][:2]
        common = {"patient_id": f"openi-{uid}", "study_id": f"openi-{uid}"}
        findings, impression = _text(rec["findings"]), _text(rec["impression"])
        if findings:
            yield factory.free_text(
                "FindingsGeneration",
                "findings_generation",
                str(uid),
                "findings",
                "test",
                images,
                findings,
                indication=_text(rec["indication"]),
                **common,
            )
        if impression:
            yield factory.free_text(
                "ImpressionGeneration",
                "impression_generation",
                str(uid),
                "impression",
                "test",
                images[:1],
                impression,
                **common,
            )
        if findings and impression:
            yield factory.free_text(
                "FindingsSummarization",
                "findings_summarization",
                str(uid),
                "summary",
                "test",
                [],
                impression,
                findings=findings,
                **common,
            )
