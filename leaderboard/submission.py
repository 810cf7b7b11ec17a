"""Results bundles: validation, storage under `<results>/submissions/<id>/`, and review.

An upload is untrusted input from the internet, so a bundle is treated as data only: its zip
members are read into memory (never extracted by the zip library), only `.json` / `.jsonl`
names that pass a strict pattern are kept, JSON is parsed with the standard library (nothing
is unpickled or imported), and every write goes through a path checked to lie inside the new
submission folder. A bundle is all-or-nothing: it lands complete via one directory rename, or
not at all.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import UserError
from harness.io import atomic_write_bytes, atomic_write_json
from harness.results_schema import Results, ResultsError, parse_json, parse_results
from harness.safe_text import display_name_problem, printable
from leaderboard.loader import OFFICIAL_DATA_FILE, STATUS_FILE, SUBMISSIONS_DIR
from leaderboard.provenance import (
    OfficialData,
    assess,
    is_synthetic,
    load_official_data,
)

MAX_BUNDLE_BYTES = 50 * 1024 * 1024  # compressed upload
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # guards against zip bombs
MAX_MEMBERS = 64
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Names the submission folder uses itself: a member by that name would shadow them.
RESERVED_NAMES = frozenset({STATUS_FILE, OFFICIAL_DATA_FILE})
SUBMISSION_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
STATUSES = ("pending", "accepted", "rejected")
LOCK_FILE = ".submissions.lock"  # serialises duplicate checks, renames and reviews
LOCK_TIMEOUT_S = 60
ACCURACY_TOLERANCE = 1e-6  # a claimed accuracy against the mean of the samples' `correct`
# What a corrupt member stream raises while it is read: deflate, LZMA, bzip2, a short file.
_DECOMPRESSION_ERRORS = (zlib.error, lzma.LZMAError, EOFError, OSError)


class BundleError(UserError, ValueError):
    """The bundle is refused; the message names the member and the reason."""


@dataclass(frozen=True)
class Submission:
    id: str
    folder: Path
    status: dict[str, Any]


def submissions_root(results_root: str | Path) -> Path:
    return Path(results_root) / SUBMISSIONS_DIR


@contextmanager
def _locked(results_root: str | Path) -> Iterator[None]:
    """Hold the submissions folder's lock (filelock: across processes and threads), or
    BundleError when another submission or review keeps it too long."""
    from filelock import FileLock, Timeout

    root = submissions_root(results_root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(root / LOCK_FILE, timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout as exc:
        raise BundleError(
            f"{root}: another submission or review held the lock for {LOCK_TIMEOUT_S} s; try again"
        ) from exc


def _safe_member_name(raw: str) -> str:
    """The member's file name, or BundleError for anything that could escape a folder or
    shadow a file the submission folder uses itself."""
    if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or "\x00" in raw:
        raise BundleError(f"{raw!r}: unsafe path in bundle (absolute or Windows-style)")
    parts = PurePosixPath(raw).parts
    if any(part in ("..", ".") for part in parts):
        raise BundleError(f"{raw!r}: unsafe path in bundle (path traversal)")
    name = parts[-1] if parts else ""
    if not SAFE_NAME.match(name):
        raise BundleError(
            f"{raw!r}: file name must match {SAFE_NAME.pattern} (letters, digits, . _ -)"
        )
    if name.lower() in RESERVED_NAMES:
        raise BundleError(
            f"{raw!r}: {name} is a reserved name (the submission folder's own "
            "file); rename the member"
        )
    if not (name.endswith(".json") or name.endswith(".jsonl")):
        raise BundleError(f"{raw!r}: only .json and .jsonl files are accepted")
    return name


def read_bundle(data: bytes, label: str = "bundle") -> dict[str, bytes]:
    """The bundle's files by sanitized name, or BundleError. Nothing touches the disk."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{label}: {len(data)} bytes is over the {MAX_BUNDLE_BYTES} byte limit")
    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        raise BundleError(f"{label}: not a zip archive (zip a results JSON and its samples JSONL)")
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(buffer) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise BundleError(f"{label}: {len(infos)} members; at most {MAX_MEMBERS}")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise BundleError(f"{label}: unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            for info in infos:
                if info.is_dir():
                    _safe_dir(info.filename)
                    continue
                name = _safe_member_name(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise BundleError(f"{info.filename!r}: symbolic links are not accepted")
                if name in files:
                    raise BundleError(f"{info.filename!r}: two members are named {name}")
                try:
                    with archive.open(info) as member:
                        content = member.read(MAX_UNPACKED_BYTES + 1)
                except _DECOMPRESSION_ERRORS as exc:
                    raise BundleError(
                        f"{info.filename!r}: corrupt compressed data ({type(exc).__name__}: {exc})"
                    ) from exc
                if len(content) > MAX_UNPACKED_BYTES:
                    raise BundleError(f"{info.filename!r}: too large when unpacked")
                files[name] = content
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        *_DECOMPRESSION_ERRORS,
    ) as exc:
        raise BundleError(f"{label}: unreadable zip ({type(exc).__name__}: {exc})") from exc
    return files


def _safe_dir(raw: str) -> None:
    parts = PurePosixPath(raw).parts
    if raw.startswith("/") or "\\" in raw or any(p in ("..", ".") for p in parts):
        raise BundleError(f"{raw!r}: unsafe path in bundle (path traversal)")


def validate_bundle(
    files: dict[str, bytes], label: str = "bundle", official: OfficialData | None = None
) -> list[dict[str, Any]]:
    """Checks every member; returns one summary per results JSON, or BundleError.

    Beyond the schema: synthetic and smoke runs are refused (whatever `source` says), names
    that are shown on the page must be printable, and a run's samples must agree with its
    claims (rows per subtask = n, mean `correct` = acc_chexbench).
    """
    official = official or OfficialData({})
    rows_by_file = {
        name: _check_jsonl(name, content)
        for name, content in sorted(files.items())
        if name.endswith(".jsonl")
    }
    results = []
    for name, content in sorted(files.items()):
        if name.endswith(".jsonl"):
            continue
        try:
            parsed = parse_results(content, name)
        except ResultsError as exc:
            raise BundleError(str(exc)) from exc
        if parsed.source in ("paper", "demo"):
            raise BundleError(
                f"{name}: source {parsed.source!r} cannot be submitted; use "
                "'reproduced' or 'submitted'"
            )
        synthetic = is_synthetic(parsed)
        if synthetic:
            raise BundleError(
                f"{name}: a synthetic run cannot be submitted: {synthetic}; "
                "its numbers say nothing about real radiographs"
            )
        _check_names(name, parsed)
        if parsed.kind == "run" and not parsed.samples_file:
            raise BundleError(
                f"{name}: a run needs its samples JSONL (samples_file), so its "
                "n and accuracy can be checked"
            )
        if parsed.samples_file and parsed.samples_file not in files:
            raise BundleError(f"{name}: samples_file {parsed.samples_file!r} is not in the bundle")
        if parsed.kind == "run":
            _check_samples(name, parsed, rows_by_file[parsed.samples_file])
        trust = assess(parsed, "pending", official)
        results.append(
            {
                "file": name,
                "run_id": parsed.run_id,
                "model": parsed.model.name,
                "kind": parsed.kind,
                "subtasks": len(parsed.subtasks),
                "data_sha256": parsed.run_card.data_sha256 if parsed.run_card else None,
                "flags": list(trust.flags),
                "notes": list(trust.reasons),
            }
        )
    if not results:
        raise BundleError(f"{label}: no results JSON in the bundle")
    return results


def _check_names(name: str, parsed: Results) -> None:
    """Everything the page shows as text must be printable, short, one line."""
    shown: list[tuple[str, str | None]] = [
        ("model.name", parsed.model.name),
        ("model.adapter", parsed.model.adapter),
        ("model.model_id", parsed.model.model_id),
        ("run_id", parsed.run_id),
    ]
    for key, sub in parsed.subtasks.items():
        shown += [
            (f"subtasks/{key}", key),
            (f"subtasks/{key}/task", sub.task),
            (f"subtasks/{key}/dataset", sub.dataset),
        ]
        shown += [(f"subtasks/{key}/metrics/{m}", m) for m in sub.metrics]
    for key, group in parsed.groups.items():
        shown += [(f"groups/{key}", key)] + [
            (f"groups/{key}/metrics/{m}", m) for m in group.metrics
        ]
    for where, text in shown:
        problem = None if text is None else display_name_problem(text)
        if problem:
            raise BundleError(f"{name}: {printable(where)} {problem}")


def _check_samples(name: str, parsed: Results, rows: list[dict[str, Any]]) -> None:
    """A run's claims against its own samples: rows per subtask and the headline accuracy."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(str(row.get("task")), []).append(row)
    for key, sub in parsed.subtasks.items():
        mine = by_task.get(key, [])
        if len(mine) != sub.n:
            raise BundleError(
                f"{name}: subtasks/{printable(key)} claims n={sub.n} but "
                f"{parsed.samples_file} has {len(mine)} rows for it"
            )
        claimed = sub.metrics.get("acc_chexbench")
        if sub.kind != "perception" or claimed is None or claimed.value is None or not mine:
            continue
        if not all(isinstance(r.get("correct"), bool) for r in mine):
            raise BundleError(
                f"{name}: {parsed.samples_file} rows for {printable(key)} need a "
                "true/false `correct`"
            )
        observed = sum(r["correct"] for r in mine) / len(mine)
        if abs(observed - claimed.value) > ACCURACY_TOLERANCE:
            raise BundleError(
                f"{name}: subtasks/{printable(key)} claims acc_chexbench="
                f"{claimed.value:.6g} but its samples give {observed:.6g}"
            )


def _check_jsonl(name: str, content: bytes) -> list[dict[str, Any]]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line, f"{name}:{lineno}")
        except ResultsError as exc:
            raise BundleError(str(exc)) from exc
        if not isinstance(row, dict):
            raise BundleError(f"{name}:{lineno}: each line must be a JSON object")
        rows.append(row)
    return rows


def content_hash(files: dict[str, bytes]) -> str:
    """Names do not count: the same numbers re-zipped under other names are still a duplicate."""
    digests = sorted(hashlib.sha256(c).hexdigest() for c in files.values())
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def list_submissions(results_root: str | Path) -> list[dict[str, Any]]:
    """Each submission's status file; one that cannot be read, or lacks a string `status` or
    a list of `results`, is listed as "unreadable status file" (the review CLI and the page
    format those fields, and a hand-edited file must not take them down)."""
    root = submissions_root(results_root)
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        status_path = folder / STATUS_FILE
        if folder.is_dir() and SUBMISSION_ID.match(folder.name) and status_path.is_file():
            try:
                status = parse_json(status_path.read_bytes(), str(status_path))
            except (OSError, ResultsError):
                status = None
            readable = (
                isinstance(status, dict)
                and isinstance(status.get("status"), str)
                and isinstance(status.get("results", []), list)
            )
            out.append(
                status if readable else {"id": folder.name, "status": "unreadable status file"}
            )
    return out


def review_notes(results_root: str | Path, status: dict[str, Any]) -> dict[str, list[str]]:
    """Each results file's provenance flags and reasons, computed now (so a data hash the
    maintainer has since listed as official no longer shows as unverified)."""
    folder = submissions_root(results_root) / str(status.get("id"))
    official = load_official_data(results_root)
    out: dict[str, list[str]] = {}
    for name in status.get("files") or {}:
        if not str(name).endswith(".json") or not SUBMISSION_ID.match(folder.name):
            continue
        try:
            parsed = parse_results((folder / name).read_bytes(), str(name))
        except (OSError, ResultsError) as exc:
            out[name] = [f"unreadable: {exc}"]
            continue
        out[name] = list(assess(parsed, str(status.get("status")), official).reasons)
    return out


def _now() -> datetime:
    return datetime.now(UTC)


def _duplicate(
    results_root: str | Path, digest: str, member_hashes: dict[str, str], label: str
) -> None:
    for existing in list_submissions(results_root):
        if existing.get("content_sha256") == digest:
            raise BundleError(
                f"{label}: duplicate of submission {existing.get('id')} "
                f"(status {existing.get('status')})"
            )
        seen = set((existing.get("files") or {}).values())
        for name, sha in member_hashes.items():
            if name.endswith(".json") and sha in seen:
                raise BundleError(f"{name}: already submitted in {existing.get('id')}")


def submit_bundle(
    data: bytes,
    results_root: str | Path,
    original_name: str = "bundle.zip",
    submitter: str | None = None,
) -> Submission:
    """Validate and store a bundle as a pending submission; BundleError when refused.

    The bundle is written to a hidden staging folder and renamed into place, and the
    duplicate check and the rename happen under one lock: two identical uploads at once give
    one submission and one clean "duplicate" refusal.
    """
    label = printable(os.path.basename(original_name) or "bundle")
    files = read_bundle(data, label)
    summaries = validate_bundle(files, label, load_official_data(results_root))
    if submitter is not None and (problem := display_name_problem(submitter)):
        raise BundleError(f"submitter {problem}")
    digest = content_hash(files)
    member_hashes = {n: hashlib.sha256(c).hexdigest() for n, c in files.items()}
    root = submissions_root(results_root)
    with _locked(results_root):
        _duplicate(results_root, digest, member_hashes, label)
        now = _now()
        sub_id = f"{now:%Y%m%dT%H%M%SZ}-{digest[:12]}"
        final = root / sub_id
        if final.exists():
            raise BundleError(f"{label}: duplicate of submission {sub_id}")
        status = {
            "id": sub_id,
            "status": "pending",
            "submitted_at": now.isoformat(timespec="seconds"),
            "original_name": label,
            "submitter": submitter,
            "content_sha256": digest,
            "files": member_hashes,
            "results": summaries,
            "history": [{"status": "pending", "at": now.isoformat(timespec="seconds")}],
        }
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
        try:
            for name, content in files.items():
                target = (staging / name).resolve()
                if target.parent != staging.resolve():  # belt and braces over _safe_member_name
                    raise BundleError(f"{name}: resolves outside the submission folder")
                atomic_write_bytes(target, content)
            atomic_write_json(staging / STATUS_FILE, status)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Submission(sub_id, final, status)


def set_status(
    results_root: str | Path, sub_id: str, new_status: str, note: str | None = None
) -> dict[str, Any]:
    """The maintainer's review step. Accepting re-validates the files against today's rules
    (schema, synthetic, names, samples), so a bundle that became invalid cannot be accepted."""
    if new_status not in STATUSES:
        raise BundleError(f"status must be one of {', '.join(STATUSES)}")
    if not SUBMISSION_ID.match(sub_id):
        raise BundleError(
            f"{printable(sub_id)!r} is not a submission id (see `chexbench submissions list`)"
        )
    folder = submissions_root(results_root) / sub_id
    status_path = folder / STATUS_FILE
    with _locked(results_root):
        if not status_path.is_file():
            raise BundleError(f"no submission {sub_id} under {submissions_root(results_root)}")
        try:
            status = parse_json(status_path.read_bytes(), str(status_path))
        except ResultsError as exc:
            raise BundleError(f"{sub_id}: unreadable status file ({exc})") from exc
        if not isinstance(status, dict):
            raise BundleError(f"{sub_id}: status file is not a JSON object")
        if new_status == "accepted":
            try:
                files = {n: (folder / n).read_bytes() for n in status.get("files", {})}
                validate_bundle(files, sub_id, load_official_data(results_root))
            except (OSError, BundleError) as exc:
                raise BundleError(f"{sub_id}: cannot accept, no longer valid: {exc}") from exc
        at = _now().isoformat(timespec="seconds")
        status["status"] = new_status
        status.setdefault("history", []).append({"status": new_status, "at": at, "note": note})
        atomic_write_json(status_path, status)
    return status
