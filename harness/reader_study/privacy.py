"""Finding patient identifiers in the text shown to readers; export refuses a field with one.

Text is normalised first (`normalise`: NFKC, so full-width "ＭＲＮ １２３" reads as "MRN 123",
then invisible characters removed, so "1234<zero-width space>5678" reads as "12345678"), and
the export shows readers the normalised text: what is checked is what is shown. Then two
passes, whose hits are pooled:

1. presidio-analyzer, a maintained PII detector, with its pattern recognizers only (the
   `no_op` NLP engine: no spaCy model, nothing downloaded at run time): phone numbers, e-mail,
   URLs, numeric dates, SSNs, IP addresses, card and licence numbers. Its e-mail check asks
   tldextract whether the domain has a public suffix; here tldextract reads the suffix list
   bundled in its wheel and keeps no cache, so detection never touches the network or ~/.
2. this project's radiology rules for what presidio cannot see without a language model:
   MRN and accession labels, month-name dates, ages over 89, titled and labelled names,
   street addresses and ZIP codes, DICOM UIDs and person names, MIMIC-CXR / CheXpert ids,
   and the published sample SSNs presidio deliberately ignores (123-45-6789).

Patterns are broad on purpose: a false alarm costs the coordinator an edit, a leak cannot be
undone. A bare name with no title or label ("John Smith") and hospital names need a language
model, which nothing offline on PyPI provides; the public datasets replace names with "___".
docs/reader-study.md lists the forms and the measured recall.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# presidio's weakest catch-all patterns (bank account numbers at 0.05, driver licences at
# 0.3) fire on vertebral levels ("T8-T10") and measurements; 0.4 keeps phone numbers (0.4).
PRESIDIO_SCORE_THRESHOLD = 0.4

# Default-ignorable characters outside the Cf (format) category, which is removed whole:
# the combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian free
# variation selectors and the variation selectors.
_IGNORABLE = frozenset(
    [
        0x034F,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x3164,
        0xFFA0,
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)


def _visible(text: str) -> str:
    return "".join(
        ch for ch in text if unicodedata.category(ch) != "Cf" and ord(ch) not in _IGNORABLE
    )


def normalise(text: str) -> str:
    """NFKC with invisible characters removed: the form every check (and every reader) sees."""
    return _visible(unicodedata.normalize("NFKC", _visible(text)))


_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![a-z])"
)
_DAY = r"(?:3[01]|[12]\d|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]|20)\d{2}"
_AGE = r"(?:9\d|1[0-4]\d)"  # over 89: HIPAA Safe Harbor pools these ages as 90+
_NAME = r"[A-Z][A-Za-z'\u2019-]+"
_STATES = (
    r"(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|"
    r"PA|PR|RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY])"
)
_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|"
    r"Pl|Terrace|Ter|Way|Circle|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq)"
)
_NUMERIC_DATE = r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}"

# kind -> patterns. Case-sensitive patterns (names, streets) run on the text as written
# (see scrub.ScrubResult.as_written): "Mr Smith" is a name, "MR imaging" is not.
RULES: dict[str, tuple[re.Pattern[str], ...]] = {
    "mrn": (
        re.compile(
            r"(?i)\b(?:MRN|MR\s*#|MR\s+no\.?|med(?:ical)?\.?\s*rec(?:ord)?s?\.?)\s*"
            r"(?:number|num\.?|no\.?|#)?\s*[:#=]?\s*[A-Z]{0,3}\d(?:[\d-]|\s(?=\d)){3,}"
        ),
    ),
    "accession": (
        re.compile(
            r"(?i)\b(?:accession|acc(?:ession)?\s*(?:no\.?|#|number))\s*(?:number|no\.?|#)?\s*[:#]?"
            r"\s*[A-Z]{0,4}-?\d{4,}"
        ),
    ),
    "date_of_birth": (
        re.compile(
            rf"(?i)\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*[:#]?\s*"
            rf"(?:{_NUMERIC_DATE}|{_MONTH}\.?\s+{_DAY},?\s+{_YEAR}|{_DAY}\s+{_MONTH}\.?,?\s+{_YEAR})"
        ),
    ),
    "date": (
        # 1/2/2019, 01-02-19, 1.2.2019 (one separator throughout; not "10.5-12.5 cm")
        re.compile(r"(?<![\d.])\d{1,2}([/.-])\d{1,2}\1(?:\d{4}|\d{2})(?![\d]|\.\d)"),
        re.compile(r"(?<![\d.])(?:19|20)\d{2}([/.-])\d{1,2}\1\d{1,2}(?![\d]|\.\d)"),
        re.compile(rf"(?<![\d./])(?:0?[1-9]|1[0-2])/{_YEAR}(?![\d/])"),  # 02/2019
        re.compile(rf"(?i)\b{_MONTH}\.?\s+{_DAY}\b(?:,?\s+{_YEAR}\b)?"),  # January 2(, 2019)
        re.compile(rf"(?i)\b{_DAY}\s+(?:of\s+)?{_MONTH}\.?,?\s+{_YEAR}\b"),  # 2 Jan 2019
        re.compile(rf"(?i)\b{_DAY}\s+(?:of\s+)?(?!may\b){_MONTH}"),  # 5th of March ("2 may" no)
        re.compile(rf"(?i)\b\d{{1,2}}[-/ ]{_MONTH}[-/ ](?:\d{{4}}|\d{{2}})\b"),  # 05-Sep-2018
        re.compile(rf"(?i)\b{_MONTH}\.?,?\s+{_YEAR}\b"),  # March 2019
    ),
    "age_over_89": (
        re.compile(rf"(?i)\b{_AGE}\s*-?\s*(?:years?|yrs?|y)(?:\s*-\s*|\s+)old\b"),
        re.compile(rf"(?i)\b{_AGE}\s*(?:y/o|y\.o\.?|yo)(?![a-z])"),
        re.compile(rf"(?i)\b{_AGE}\s*(?:years?|yrs?)\s+of\s+age\b"),
        re.compile(rf"(?i)\bage[ds]?\s*(?:of\s+)?[:=]?\s*{_AGE}\b"),
        re.compile(
            r"(?i)\b(?:ninety|one\s+hundred(?:\s+and)?)(?:[\s-]+(?:one|two|three|four|"
            r"five|six|seven|eight|nine))?[\s-]+(?:years?|yrs?)[\s-]+old\b"
        ),
        re.compile(r"(?i)\b(?:nonagenarian|centenarian)\b"),
        re.compile(r"(?i)\bin\s+(?:his|her|their)\s+(?:nineties|90s|hundreds)\b"),
    ),
    "ssn": (
        re.compile(r"\b\d{3}([- ])\d{2}\1\d{4}\b"),
        re.compile(
            r"(?i)\b(?:SSN|social\s+security(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*"
            r"\d{3}[- ]?\d{2}[- ]?\d{4}\b"
        ),
    ),
    "titled_name": (
        re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof)\b\.?\s+{_NAME}(?:\s+{_NAME})?"),
        re.compile(r"(?i)\b(?:dr|mrs?|prof)\.\s*[a-z][a-z'\u2019-]+"),
    ),
    "labelled_name": (
        re.compile(
            rf"(?i:\b(?:patient(?:'s)?|pt\.?)(?:\s+name)?\s*[:\u2013\u2014-]\s*)"
            rf"(?:{_NAME}(?:\s+{_NAME})+|{_NAME},\s*{_NAME})"
        ),
        re.compile(
            r"(?i)\b(?:patient(?:'s)?\s+name|pt\.?\s+name|name)\s*:\s*"
            r"[a-z][a-z'\u2019-]*(?:,?\s+[a-z][a-z'\u2019-]*){0,2}"
        ),
        re.compile(r"\b[A-Za-z][A-Za-z'\u2019-]*\^[A-Za-z][A-Za-z'\u2019^-]*"),  # DICOM LAST^FIRST
    ),
    "street_address": (
        re.compile(rf"\b\d{{1,5}}\s+(?:{_NAME}\.?\s+){{1,3}}{_STREET}\b\.?"),
        re.compile(
            r"(?i)\b\d{1,5}\s+(?:[a-z][a-z'\u2019-]*\s+){1,3}(?:street|avenue|road|"
            r"boulevard|lane|terrace|parkway|highway)\b"
        ),
        re.compile(
            r"\b(?:[A-Z][a-z]+\s+){1,2}(?:Street|Avenue|Road|Boulevard|Lane|Terrace|"
            r"Parkway)\b"
        ),  # Elm Street (no house number)
        re.compile(rf"\b{_STATES},?\s+\d{{5}}(?:-\d{{4}})?\b"),  # MA 02115, IL 62704-1234
        re.compile(r"(?i)\bp\.?\s*o\.?\s+box\s+\d+"),
    ),
    "email_address": (re.compile(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+\b"),),
    "dicom_uid": (re.compile(r"\b[12](?:\.\d+){4,}\b"),),
    "mimic_subject_id": (re.compile(r"\bp\d{8}\b"),),
    "mimic_study_id": (re.compile(r"\bs\d{8}\b"),),
    "mimic_dicom_id": (re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{8}){4}\b"),),
    "chexpert_patient_id": (re.compile(r"(?i)\bpatient\d{3,}\b"),),
}


@dataclass(frozen=True)
class IdentifierHit:
    kind: str  # a RULES key, or presidio's entity type in lower case ("phone_number")
    start: int  # character offsets in normalise(text)
    end: int
    source: str  # "presidio" or "rule"


@functools.lru_cache(maxsize=1)
def _presidio() -> Any:
    """presidio's analyzer with pattern recognizers only, built once (import takes seconds)."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # No suffix-list URLs and no cache folder: the list bundled in tldextract's wheel is used,
    # instead of fetching publicsuffix.org on first use and caching it under ~/.cache.
    offline_suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    # Loading warns once per recognizer of another language (Spanish, Italian, ...): noise.
    log = logging.getLogger("presidio-analyzer")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    finally:
        log.setLevel(level)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer())
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def presidio_hits(text: str) -> list[IdentifierHit]:
    """The first pass alone, on already-normalised text."""
    results = _presidio().analyze(
        text=text, language="en", score_threshold=PRESIDIO_SCORE_THRESHOLD
    )
    return [IdentifierHit(r.entity_type.lower(), r.start, r.end, "presidio") for r in results]


def rule_hits(text: str) -> list[IdentifierHit]:
    """The project's rules alone, on already-normalised text."""
    return [
        IdentifierHit(kind, m.start(), m.end(), "rule")
        for kind, patterns in RULES.items()
        for pat in patterns
        for m in pat.finditer(text)
    ]


def find_identifiers(text: str) -> list[IdentifierHit]:
    """Every identifier-like span of `normalise(text)`, sorted by position."""
    norm = normalise(text)
    if not norm.strip():
        return []
    hits = set(presidio_hits(norm)) | set(rule_hits(norm))
    return sorted(hits, key=lambda h: (h.start, h.end, h.kind, h.source))


def identifier_spans(text: str) -> list[dict[str, Any]]:
    """What may be logged about the identifiers in `text`: kind and position, never the text.

    Positions are in `normalise(text)`; overlapping hits of one kind are merged.
    """
    spans: list[dict[str, Any]] = []
    for h in find_identifiers(text):
        last = next((s for s in reversed(spans) if s["kind"] == h.kind), None)
        if last is not None and h.start <= last["end"]:
            last["end"] = max(last["end"], h.end)
        else:
            spans.append({"kind": h.kind, "start": h.start, "end": h.end})
    return spans
