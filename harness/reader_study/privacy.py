"""Patterns that look like patient identifiers; export refuses to write any field matching one.

The patterns are deliberately broad (a false alarm costs a manual edit, a leak cannot be
undone). They cover what the issue names (MRN, names, date of birth, accession numbers) plus
the dataset ids that identify a patient or study in MIMIC-CXR and CheXpert, full calendar
dates, and social security numbers. A bare name without a title ("John Smith") cannot be told
from ordinary words by a pattern: the public datasets already replace names with "___".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DATE = r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|(?:19|20)\d{2}-\d{2}-\d{2})"

IDENTIFIER_PATTERNS: dict[str, re.Pattern[str]] = {
    "mrn": re.compile(
        r"(?i)\b(?:MRN|MR\s*#|medical\s+record\s+(?:number|no\.?|#))\s*[:#]?\s*[A-Z]{0,3}\d{4,}"),
    "accession": re.compile(
        r"(?i)\b(?:accession|acc(?:ession)?\s*(?:no\.?|#|number))\s*(?:number|no\.?|#)?\s*[:#]?"
        r"\s*[A-Z]{0,4}-?\d{4,}"),
    "date_of_birth": re.compile(
        rf"(?i)\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*[:#]?\s*"
        rf"(?:{_DATE}|[A-Z][a-z]+\s+\d{{1,2}},?\s+\d{{4}})"),
    "date": re.compile(rf"\b{_DATE}\b"),
    "name": re.compile(
        r"(?i:\b(?:patient(?:'s)?\s+name|pt\.?\s+name|name)\s*:\s*[a-z])"
        r"|\b(?i:dr\.?|mrs?\.|ms\.|miss|prof\.)\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\b"
        r"|\b(?i:dr\.|mrs?\.|ms\.|prof\.)\s+[a-z]{2,}\b"),
    "mimic_subject_id": re.compile(r"\bp\d{8}\b"),
    "mimic_study_id": re.compile(r"\bs\d{8}\b"),
    "mimic_dicom_id": re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{8}){4}\b"),
    "chexpert_patient_id": re.compile(r"(?i)\bpatient\d{3,}\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
}


@dataclass(frozen=True)
class IdentifierHit:
    kind: str
    match: str


def find_identifiers(text: str) -> list[IdentifierHit]:
    return [IdentifierHit(kind, m.group(0)) for kind, pat in IDENTIFIER_PATTERNS.items()
            for m in pat.finditer(text)]
