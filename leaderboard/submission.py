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
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from harness.io import atomic_write_bytes, atomic_write_json
from leaderboard.loader import STATUS_FILE, SUBMISSIONS_DIR, parse_results

MAX_BUNDLE_BYTES = 50 * 1024 * 1024  # compressed upload
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # guards against zip bombs
MAX_MEMBERS = 64
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUBMISSION_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
STATUSES = ("pending", "accepted", "rejected")


class BundleError(ValueError):
    """The bundle is refused; the message names the member and the reason."""


@dataclass(frozen=True)
class Submission:
    id: str
    folder: Path
    status: dict[str, Any]


def submissions_root(results_root: str | Path) -> Path:
    return Path(results_root) / SUBMISSIONS_DIR


def _safe_member_name(raw: str) -> str:
    """The member's file name, or BundleError for anything that could escape a folder."""
    if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or "\x00" in raw:
        raise BundleError(f"{raw!r}: unsafe path in bundle (absolute or Windows-style)")
    parts = PurePosixPath(raw).parts
    if any(part in ("..", ".") for part in parts):
        raise BundleError(f"{raw!r}: unsafe path in bundle (path traversal)")
    name = parts[-1] if parts else ""
    if not SAFE_NAME.match(name):
        raise BundleError(
            f"{raw!r}: file name must match {SAFE_NAME.pattern} (letters, digits, . _ -)")
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
                with archive.open(info) as member:
                    content = member.read(MAX_UNPACKED_BYTES + 1)
                if len(content) > MAX_UNPACKED_BYTES:
                    raise BundleError(f"{info.filename!r}: too large when unpacked")
                files[name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise BundleError(f"{label}: unreadable zip ({exc})") from exc
    return files


def _safe_dir(raw: str) -> None:
    parts = PurePosixPath(raw).parts
    if raw.startswith("/") or "\\" in raw or any(p in ("..", ".") for p in parts):
        raise BundleError(f"{raw!r}: unsafe path in bundle (path traversal)")


def validate_bundle(files: dict[str, bytes], label: str = "bundle") -> list[dict[str, Any]]:
    """Checks every member; returns one summary per results JSON, or BundleError."""
    results = []
    for name, content in sorted(files.items()):
        if name.endswith(".jsonl"):
            _check_jsonl(name, content)
            continue
        parsed = parse_results(content, name)  # ValueError with the schema's reasons
        if parsed.source in ("paper", "demo"):
            raise BundleError(f"{name}: source {parsed.source!r} cannot be submitted; use "
                              "'reproduced' or 'submitted'")
        if parsed.samples_file and parsed.samples_file not in files:
            raise BundleError(f"{name}: samples_file {parsed.samples_file!r} is not in the bundle")
        results.append({"file": name, "run_id": parsed.run_id, "model": parsed.model.name,
                        "kind": parsed.kind, "subtasks": len(parsed.subtasks)})
    if not results:
        raise BundleError(f"{label}: no results JSON in the bundle")
    return results


def _check_jsonl(name: str, content: bytes) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{name}: not UTF-8 ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{name}:{lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise BundleError(f"{name}:{lineno}: each line must be a JSON object")


def content_hash(files: dict[str, bytes]) -> str:
    """Names do not count: the same numbers re-zipped under other names are still a duplicate."""
    digests = sorted(hashlib.sha256(c).hexdigest() for c in files.values())
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def list_submissions(results_root: str | Path) -> list[dict[str, Any]]:
    root = submissions_root(results_root)
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        status_path = folder / STATUS_FILE
        if folder.is_dir() and SUBMISSION_ID.match(folder.name) and status_path.is_file():
            try:
                out.append(json.loads(status_path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError):
                out.append({"id": folder.name, "status": "unreadable status file"})
    return out


def _now() -> datetime:
    return datetime.now(UTC)


def submit_bundle(data: bytes, results_root: str | Path, original_name: str = "bundle.zip",
                  submitter: str | None = None) -> Submission:
    """Validate and store a bundle as a pending submission; BundleError when refused."""
    label = os.path.basename(original_name) or "bundle"
    files = read_bundle(data, label)
    try:
        summaries = validate_bundle(files, label)
    except BundleError:
        raise
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    digest = content_hash(files)
    member_hashes = {n: hashlib.sha256(c).hexdigest() for n, c in files.items()}
    for existing in list_submissions(results_root):
        if existing.get("content_sha256") == digest:
            raise BundleError(f"{label}: duplicate of submission {existing.get('id')} "
                              f"(status {existing.get('status')})")
        seen = set((existing.get("files") or {}).values())
        for name, sha in member_hashes.items():
            if name.endswith(".json") and sha in seen:
                raise BundleError(f"{name}: already submitted in {existing.get('id')}")
    now = _now()
    sub_id = f"{now:%Y%m%dT%H%M%SZ}-{digest[:12]}"
    root = submissions_root(results_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / sub_id
    if final.exists():
        raise BundleError(f"{label}: duplicate of submission {sub_id}")
    status = {
        "id": sub_id, "status": "pending", "submitted_at": now.isoformat(timespec="seconds"),
        "original_name": label, "submitter": submitter, "content_sha256": digest,
        "files": member_hashes, "results": summaries,
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
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Submission(sub_id, final, status)


def set_status(results_root: str | Path, sub_id: str, new_status: str,
               note: str | None = None) -> dict[str, Any]:
    """The maintainer's review step. Accepting re-validates the files against today's schema."""
    if new_status not in STATUSES:
        raise BundleError(f"status must be one of {', '.join(STATUSES)}")
    if not SUBMISSION_ID.match(sub_id):
        raise BundleError(f"{sub_id!r} is not a submission id (see `chexbench submissions list`)")
    folder = submissions_root(results_root) / sub_id
    status_path = folder / STATUS_FILE
    if not status_path.is_file():
        raise BundleError(f"no submission {sub_id} under {submissions_root(results_root)}")
    status = json.loads(status_path.read_text(encoding="utf-8"))
    if new_status == "accepted":
        files = {n: (folder / n).read_bytes() for n in status.get("files", {})}
        try:
            validate_bundle(files, sub_id)
        except ValueError as exc:
            raise BundleError(f"{sub_id}: cannot accept, no longer valid: {exc}") from exc
    at = _now().isoformat(timespec="seconds")
    status["status"] = new_status
    status.setdefault("history", []).append({"status": new_status, "at": at, "note": note})
    atomic_write_json(status_path, status)
    return status
