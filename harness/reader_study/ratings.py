"""Reading filled packets (or a REDCap raw export) back, with every problem named by file and row.

A reader study is expensive to repeat, so nothing is silently dropped: an unknown item, a
blank answer, a value outside 1..5 or a reader rating an item twice is an error that names the
file and CSV row (row 1 is the header), and all of them are reported at once. A reader's
comment on a case (the packet's `comment` column, REDCap's `<case>_comment`) travels with the
ratings into scores.csv.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.reader_study.design import ATTRIBUTES, SCALE, parse_answer
from harness.reader_study.export import KEY_FORMAT
from harness.reader_study.redcap import COMMENT

MAX_REPORTED = 50
_REDCAP_FIELD = re.compile(rf"^([a-z]{{2}}\d+)_({'|'.join(ATTRIBUTES)})$")
_REDCAP_COMMENT = re.compile(rf"^([a-z]{{2}}\d+)_{COMMENT}$")


@dataclass(frozen=True)
class Rating:
    study_id: str
    reader: str
    opaque_id: str
    attribute: str
    code: int
    where: str  # "file row N"
    comment: str = ""  # the reader's comment on the case (the same on its three ratings)


def load_key(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the study key ({exc})") from exc
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise UserError(
            f"{path}: not a reader-study key (expected format {KEY_FORMAT!r}; it is "
            "key/key.json in the folder `reader-study export` wrote)"
        )
    key["_path"] = str(path)
    return key


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read ratings CSV ({exc})") from exc
    if not header:
        raise UserError(f"{path}: empty file, expected a filled packet CSV or a REDCap export")
    return header, rows


class _Collector:
    def __init__(self, keys: list[dict[str, Any]]):
        self.by_study = {k["study_id"]: k for k in keys}
        self.study_of_item = {it["opaque_id"]: k["study_id"] for k in keys for it in k["items"]}
        self.errors: list[str] = []
        self.ratings: dict[tuple[str, str, str, str], Rating] = {}
        self.attempted: dict[tuple[str, str], set[str]] = {}  # (study, reader) -> items
        self.file_of: dict[tuple[str, str], str] = {}
        self.comments: dict[tuple[str, str, str], str] = {}  # (study, reader, item) -> text

    def comment(self, study: str, reader: str, oid: str, raw: str | None) -> None:
        if raw and raw.strip():
            self.comments[(study, reader, oid)] = raw.strip()

    def add(
        self, study: str, reader: str, oid: str, attr: str, raw: str | None, where: str
    ) -> None:
        key = self.by_study.get(study)
        if key is None:
            self.errors.append(
                f"{where}: unknown study_id {study!r} (keys: {', '.join(sorted(self.by_study))})"
            )
            return
        if oid not in {it["opaque_id"] for it in key["items"]}:
            self.errors.append(f"{where}: unknown item {oid!r} for study {study}")
            return
        if reader not in key["readers"]:
            self.errors.append(
                f"{where}: unknown reader {reader!r} (study {study} has "
                f"{', '.join(key['readers'])})"
            )
            return
        self.attempted.setdefault((study, reader), set()).add(oid)
        self.file_of.setdefault((study, reader), where.rsplit(" row ", 1)[0])
        if raw is None or not raw.strip():
            self.errors.append(f"{where}: item {oid}: missing answer for {attr}")
            return
        code = parse_answer(raw)
        if code is None:
            self.errors.append(
                f"{where}: item {oid}: {attr} = {raw.strip()!r} is out of range "
                f"(expected 1..{len(SCALE)} or a scale label)"
            )
            return
        ident = (study, reader, oid, attr)
        if ident in self.ratings:
            self.errors.append(
                f"{where}: reader {reader} rated {oid} {attr} twice (also "
                f"{self.ratings[ident].where})"
            )
            return
        self.ratings[ident] = Rating(study, reader, oid, attr, code, where)

    def read_packet(self, path: Path, rows: list[dict[str, str]]) -> None:
        for i, row in enumerate(rows, 2):
            where = f"{path} row {i}"
            study, reader, oid = (
                str(row.get(c) or "").strip() for c in ("study_id", "reader_id", "item_id")
            )
            if not oid:
                self.errors.append(f"{where}: no item_id")
                continue
            for attr in ATTRIBUTES:
                self.add(study, reader, oid, attr, row.get(attr), where)
            self.comment(study, reader, oid, row.get(COMMENT))

    def read_redcap(self, path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
        fields = {}
        for col in header:
            m = _REDCAP_FIELD.match(col)
            if m:
                fields[col] = m.groups()
        unknown = sorted({oid for oid, _ in fields.values() if oid not in self.study_of_item})
        if unknown:
            self.errors.append(
                f"{path} row 1: unknown items {', '.join(unknown)} (not in any --key)"
            )
        for i, row in enumerate(rows, 2):
            where = f"{path} row {i}"
            reader = str(row.get("reader_id") or row.get("record_id") or "").strip()
            if not reader:
                self.errors.append(f"{where}: no reader_id or record_id")
                continue
            for col, (oid, attr) in fields.items():
                study = str(row.get("study_id") or "").strip() or self.study_of_item.get(oid, "")
                if oid in self.study_of_item:
                    self.add(study, reader, oid, attr, row.get(col), where)
            for col in header:
                m = _REDCAP_COMMENT.match(col)
                if m and m.group(1) in self.study_of_item:
                    study = str(row.get("study_id") or "").strip() or self.study_of_item[m.group(1)]
                    self.comment(study, reader, m.group(1), row.get(col))

    def check_complete(self) -> None:
        """A reader who returned anything must have a row for every item of the study."""
        for (study, reader), done in sorted(self.attempted.items()):
            missing = [
                it["opaque_id"]
                for it in self.by_study[study]["items"]
                if it["opaque_id"] not in done
            ]
            if missing:
                self.errors.append(
                    f"{self.file_of[(study, reader)]}: reader {reader} has no "
                    f"answers for items {', '.join(missing)}"
                )


def read_ratings(paths: list[str | Path], keys: list[dict[str, Any]]) -> list[Rating]:
    """All ratings, or a UserError listing every problem with file and row."""
    if not paths:
        raise UserError("no --ratings files given")
    ids = [it["opaque_id"] for k in keys for it in k["items"]]
    if len(ids) != len(set(ids)):
        raise UserError(
            "two --key files share item ids (two exports of the same task?); "
            "analyze them separately"
        )
    col = _Collector(keys)
    for p in paths:
        path = Path(p)
        header, rows = _read_csv(path)
        if {"item_id", *ATTRIBUTES} <= set(header):
            col.read_packet(path, rows)
        elif "record_id" in header and any(_REDCAP_FIELD.match(c) for c in header):
            col.read_redcap(path, header, rows)
        else:
            raise UserError(
                f"{path} row 1: neither a packet CSV (needs item_id, "
                f"{', '.join(ATTRIBUTES)}) nor a REDCap raw export (needs record_id "
                "and <item>_<attribute> columns; export raw codes, not labels)"
            )
    col.check_complete()
    if col.errors:
        shown = col.errors[:MAX_REPORTED]
        more = len(col.errors) - len(shown)
        raise UserError(
            f"{len(col.errors)} problem(s) in the ratings:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    if not col.ratings:
        raise UserError("the ratings files hold no answers")
    return [
        replace(r, comment=col.comments.get((r.study_id, r.reader, r.opaque_id), ""))
        for r in col.ratings.values()
    ]
