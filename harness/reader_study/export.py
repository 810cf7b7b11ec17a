"""`reader-study export`: from finished runs to blinded packets, a REDCap kit and a key.

Everything is rendered in memory first and checked (patient identifiers, system names, file
names of the images) before the first byte is written, so a refused export leaves nothing
behind; each file is then written atomically. Runs on synthetic data or from a random-weight
(smoke) model are refused unless forced, and then every packet says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from harness.docs import GENERATION_MAX_IMAGES
from harness.errors import UserError
from harness.images import ImageResolver, check_image, open_image
from harness.io import atomic_write_bytes
from harness.reader_study.design import ATTRIBUTES, PHYSICIAN, SCALE, score_for_x
from harness.reader_study.packets import BlindItem, packet_csv, packet_html
from harness.reader_study.privacy import find_identifiers, identifier_spans, normalise
from harness.reader_study.redcap import dictionary_csv, import_template_csv
from harness.reader_study.scrub import ScrubResult, scrub
from harness.reader_study.selection import (
    Candidate,
    System,
    assign_sides,
    load_candidates,
    opaque_ids,
    reader_order,
    select,
    study_id,
)

KEY_FORMAT = "chexbench-reader-study-key/1"
# Longest side of the films embedded in packets (and REDCap's images): large enough that the
# packet's click-to-zoom shows detail a 320-pixel preview cannot.
FILM_PX = 1024
# Scrubber cuts logged as text: headers and list marks come from a closed vocabulary. Other
# cuts (signatures, prior-study clauses) are free text that may hold a name no pattern finds,
# so the log keeps only their length and the kinds of identifier found in them.
_LOGGED_AS_TEXT = frozenset({"section_header", "list_numbering", "whitespace", "case"})
# Embedded images are data, not text: the unblinding scan skips them.
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]*")
# Names shorter than this are not searched for (a two-letter name matches too much prose).
MIN_FORBIDDEN_CHARS = 3


@dataclass(frozen=True)
class ExportConfig:
    runs: list[str]
    task: str
    n: int = 20
    readers: int = 5
    seed: int = 0
    out: Path = Path("reader_study")
    stratify: str = "none"
    score_metric: str = "rougeL"
    data: str | None = None
    image_root: str | None = None
    image_map: str | None = None
    thumbnails: bool = True
    force: bool = False


def _film(path: Path) -> bytes:
    """A grayscale PNG re-encoded from pixels only (no EXIF or text chunks survive)."""
    img = open_image(path).convert("L")
    img.thumbnail((FILM_PX, FILM_PX))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _images(c: Candidate, oid: str, resolver: ImageResolver) -> tuple[tuple[str, bytes], ...]:
    out = []
    for k, raw in enumerate(c.image_paths[:GENERATION_MAX_IMAGES], 1):
        path = resolver.resolve(raw, c.dataset)
        problem = check_image(path)
        if problem:
            raise UserError(
                f"{c.where}: item {c.item_id}: image {path} is {problem}; pass "
                "--image-root (and --image-map) to point at your copy of the data, "
                "or --no-thumbnails"
            )
        out.append((f"{oid}_img{k}", _film(path)))
    return tuple(out)


def _guard_identifiers(fields: dict[str, dict[str, str]], where: str) -> None:
    """Refuse a field in which any of its forms (as shown, as written) holds an identifier.

    The message names the kind and where it is, never the identifier itself: it ends up in
    terminals and CI logs.
    """
    for name, forms in fields.items():
        hits = [(form, h) for form, text in forms.items() for h in find_identifiers(text)]
        if hits:
            kinds = ", ".join(sorted({h.kind for _, h in hits}))
            form, h = hits[0]
            raise UserError(
                f"{where}: field {name!r} looks like it holds a patient identifier "
                f"({kinds}; the first at characters {h.start}-{h.end} of the text "
                f"{form}); refusing to export, nothing was written. Remove it from "
                "the data (docs/reader-study.md lists the forms)."
            )


def _log_side(original: str, res: ScrubResult) -> dict[str, Any]:
    """The scrub log of one text: what the scrubber did, without a copy of the text.

    The original is named by its hash (it is in the run's samples file); identifiers in it,
    all of which the scrubber cut (or the export would have refused), by kind and position.
    """
    changes = [
        c
        if c["rule"] in _LOGGED_AS_TEXT
        else {
            "rule": c["rule"],
            "removed_chars": len(c["removed"]),
            "identifiers": sorted({s["kind"] for s in identifier_spans(c["removed"])}),
        }
        for c in res.changes
    ]
    return {
        "original_sha256": hashlib.sha256(original.encode()).hexdigest(),
        "normalised_chars": len(normalise(original)),
        "identifiers_cut": identifier_spans(original),
        "changes": changes,
        "flags": res.flags,
    }


def demo_warning(systems: list[System]) -> str | None:
    """The banner of a study whose runs cannot say anything about a real model, or None."""
    synthetic = any(s.synthetic for s in systems)
    smoke = any(s.smoke for s in systems)
    if not (synthetic or smoke):
        return None
    what = " and ".join(
        w
        for w, on in (("run on synthetic data", synthetic), ("random-weight (smoke) model", smoke))
        if on
    )
    return (
        f"Practice packet: the texts come from a {what}. Ratings of it say nothing about "
        "a real model; use it only to try the workflow."
    )


def _forbidden_strings(cands: list[Candidate], names: list[str]) -> list[str]:
    """What must never appear in a packet: system names, original ids and image file names."""
    out = {n for n in names if n and n != PHYSICIAN}
    for c in cands:
        out.add(c.item_id)
        for raw in c.image_paths:
            out.add(Path(raw).name)
            out.add(Path(raw).stem)
    return sorted(s for s in out if len(s) >= MIN_FORBIDDEN_CHARS)


def _unblinding_leak(files: dict[str, bytes], forbidden: list[str]) -> tuple[str, str] | None:
    """(file, string) for the first forbidden string in a packet's text, or None.

    The scan reads text only (embedded images are skipped) and matches whole words, case- and
    width-insensitively: a name inside a longer word ("Medi" in "mediastinal") or inside
    base64 image data is a coincidence, not a leak.
    """
    needles = sorted({normalise(s).casefold() for s in forbidden}, key=len, reverse=True)
    if not needles:
        return None
    pattern = re.compile(
        r"(?<![0-9a-z_])(?:" + "|".join(map(re.escape, needles)) + r")(?![0-9a-z_])"
    )
    for rel, data in files.items():
        if rel.endswith(".png"):
            continue
        text = normalise(_DATA_URI.sub(" ", data.decode("utf-8"))).casefold()
        m = pattern.search(text)
        if m:
            original = next(s for s in forbidden if normalise(s).casefold() == m.group(0))
            return rel, original
    return None


def build_export(cfg: ExportConfig) -> dict[str, bytes]:
    """All output files (relative path -> bytes), after every privacy and blinding check."""
    cands, x, y, data_path = load_candidates(cfg.runs, cfg.task, cfg.data)
    if cfg.readers < 1:
        raise UserError("--readers must be at least 1")
    warning = demo_warning([x, y])
    if warning and not cfg.force:
        demo = [s for s in (x, y) if s.synthetic or s.smoke]
        why = "; ".join(
            f"{s.run}: "
            + " and ".join(
                w
                for w, on in (
                    ("synthetic data (run_card.synthetic)", s.synthetic),
                    ("a random-weight smoke model (model.smoke)", s.smoke),
                )
                if on
            )
            for s in demo
        )
        raise UserError(
            f"{why}: reader ratings of it would measure nothing; refusing to export "
            "a study from it. Pass --force to export a practice study anyway (every "
            "packet then carries a warning)."
        )
    chosen, stratum = select(cands, cfg.n, cfg.seed, cfg.stratify, cfg.score_metric)
    ids = [c.item_id for c in chosen]
    x_side = assign_sides(ids, cfg.seed)
    oid = opaque_ids(ids, cfg.seed, cfg.task)
    resolver = ImageResolver.from_args(cfg.image_root or data_path.parent, cfg.image_map)
    readers = [f"R{k}" for k in range(1, cfg.readers + 1)]

    blind: dict[str, BlindItem] = {}
    key_items: list[dict[str, Any]] = []
    scrub_log: list[dict[str, Any]] = []
    for c in tqdm(
        sorted(chosen, key=lambda c: oid[c.item_id]),
        desc="reader-study export",
        unit="item",
        disable=None,
    ):
        o = oid[c.item_id]
        # Readers see normalised text (full-width folded, invisible characters gone): the
        # identifier gate checks exactly what is shown.
        sx, sy = scrub(normalise(c.text_x)), scrub(normalise(c.text_y))
        task_input = " ".join(normalise(c.task_input).split())
        text_a, text_b = (sx.text, sy.text) if x_side[c.item_id] == "A" else (sy.text, sx.text)
        where = f"{c.where} (task {cfg.task}, item {c.item_id})"
        _guard_identifiers(
            {
                "input": {"as shown": task_input},
                "x_text": {"as shown": sx.text, "as written": sx.as_written},
                "y_text": {"as shown": sy.text, "as written": sy.as_written},
            },
            where,
        )
        if not sx.text.strip() or not sy.text.strip():
            raise UserError(
                f"{where}: a text is empty after scrubbing; choose other items "
                "(another --seed) or fix the run"
            )
        # Summarization readers compare texts against the findings: no images, as in the paper.
        show = cfg.thumbnails and cfg.task == "findings_generation"
        images = _images(c, o, resolver) if show else ()
        blind[o] = BlindItem(o, task_input, text_a, text_b, images)
        key_items.append(
            {
                "opaque_id": o,
                "item_id": c.item_id,
                "dataset": c.dataset,
                "cluster_id": c.cluster_id,
                "stratum": stratum[c.item_id],
                "x_side": x_side[c.item_id],
                "images": {i: raw for (i, _), raw in zip(images, c.image_paths, strict=False)},
                "metrics_x": c.metrics_x,
                "metrics_y": c.metrics_y,
                "source_row": c.where,
            }
        )
        scrub_log.append(
            {"opaque_id": o, "x": _log_side(c.text_x, sx), "y": _log_side(c.text_y, sy)}
        )

    sid = study_id(
        {
            "task": cfg.task,
            "seed": cfg.seed,
            "items": sorted(ids),
            "x": x.results_sha256,
            "y": y.results_sha256 or y.name,
            "readers": len(readers),
        }
    )
    orders = {r: reader_order(sorted(blind), cfg.seed, r) for r in readers}
    files: dict[str, bytes] = {}
    for r in readers:
        items = [blind[o] for o in orders[r]]
        files[f"packets/{r}.csv"] = packet_csv(sid, r, items).encode()
        files[f"packets/{r}.html"] = packet_html(sid, r, cfg.task, items, warning).encode()
    design_order = [blind[o] for o in sorted(blind)]
    files["redcap/data_dictionary.csv"] = dictionary_csv(
        sid, cfg.task, design_order, warning
    ).encode()
    files["redcap/import_template.csv"] = import_template_csv(
        sid, cfg.task, design_order, readers
    ).encode()
    for it in design_order:
        for img_id, png in it.images:
            files[f"redcap/images/{img_id}.png"] = png

    forbidden = _forbidden_strings(
        chosen, [x.name, y.name, *(str(x.model.get(k) or "") for k in ("model_id", "adapter"))]
    )
    leak = _unblinding_leak(files, forbidden)
    if leak:
        raise UserError(
            f"{leak[0]} would contain {leak[1]!r} (a system name, item id or image "
            "file name), which unblinds the study; refusing to export"
        )

    balance = {
        "x_on_A": sum(v == "A" for v in x_side.values()),
        "x_on_B": sum(v == "B" for v in x_side.values()),
    }
    key = {
        "format": KEY_FORMAT,
        "study_id": sid,
        "task": cfg.task,
        "seed": cfg.seed,
        "n_items": len(chosen),
        "readers": readers,
        "reader_orders": orders,
        "stratify": cfg.stratify,
        "score_metric": cfg.score_metric if cfg.stratify == "score" else None,
        "x": asdict(x),
        "y": asdict(y),
        "attributes": list(ATTRIBUTES),
        "scale": {str(k): v for k, v in SCALE.items()},
        "score_for_x": {
            "A": {str(k): score_for_x(k, "A") for k in SCALE},
            "B": {str(k): score_for_x(k, "B") for k in SCALE},
        },
        "balance": balance,
        "demo_warning": warning,
        "data_file": str(data_path),
        "data_sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
        "items": key_items,
    }
    files["key/key.json"] = _json(key)
    files["key/scrub_log.json"] = _json({"study_id": sid, "items": scrub_log})
    files["manifest.json"] = _json(
        {
            "study_id": sid,
            "task": cfg.task,
            "n_items": len(chosen),
            "n_readers": len(readers),
            "files": [
                {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                for rel, data in sorted(files.items())
            ],
            "note": "key/ un-blinds the study: keep it away from the readers",
        }
    )
    return files


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_export(cfg: ExportConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    if (out / "key" / "key.json").exists() and not cfg.force:
        raise UserError(
            f"{out} already holds a reader study (key/key.json); choose another "
            "--out or pass --force to overwrite it"
        )
    files = build_export(cfg)
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
    # --force: files of the replaced study (another reader count, other images) would
    # otherwise sit beside the new ones and contradict the manifest.
    for sub in ("packets", "redcap", "key"):
        for stale in (out / sub).rglob("*"):
            if stale.is_file() and stale.relative_to(out).as_posix() not in files:
                stale.unlink()
    return json.loads(files["key/key.json"])
