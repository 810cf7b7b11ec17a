"""`reader-study export`: from finished runs to blinded packets, a REDCap kit and a key.

Everything is rendered in memory first and checked (identifier patterns, system names, file
names of the images) before the first byte is written, so a refused export leaves nothing
behind; each file is then written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
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
from harness.reader_study.privacy import find_identifiers
from harness.reader_study.redcap import dictionary_csv, import_template_csv
from harness.reader_study.scrub import scrub
from harness.reader_study.selection import (
    Candidate,
    assign_sides,
    load_candidates,
    opaque_ids,
    reader_order,
    select,
    study_id,
)

KEY_FORMAT = "chexbench-reader-study-key/1"
THUMBNAIL_PX = 384


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


def _thumbnail(path: Path) -> bytes:
    """A small grayscale PNG re-encoded from pixels only (no EXIF or text chunks survive)."""
    img = open_image(path).convert("L")
    img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _images(c: Candidate, oid: str, resolver: ImageResolver) -> tuple[tuple[str, bytes], ...]:
    out = []
    for k, raw in enumerate(c.image_paths[:GENERATION_MAX_IMAGES], 1):
        path = resolver.resolve(raw, c.dataset)
        problem = check_image(path)
        if problem:
            raise UserError(f"{c.where}: item {c.item_id}: image {path} is {problem}; pass "
                            "--image-root (and --image-map) to point at your copy of the data, "
                            "or --no-thumbnails")
        out.append((f"{oid}_img{k}", _thumbnail(path)))
    return tuple(out)


def _guard_identifiers(fields: dict[str, str], where: str) -> None:
    for name, value in fields.items():
        hits = find_identifiers(value)
        if hits:
            found = "; ".join(f"{h.kind} {h.match!r}" for h in hits[:3])
            raise UserError(f"{where}: field {name!r} looks like it holds a patient identifier "
                            f"({found}); refusing to export. Remove it from the data, or see "
                            "docs/reader-study.md for the patterns.")


def _forbidden_strings(cands: list[Candidate], names: list[str]) -> list[str]:
    """What must never appear in a packet: system names, original ids and image file names."""
    out = {n for n in names if n and n != PHYSICIAN}
    for c in cands:
        out.add(c.item_id)
        for raw in c.image_paths:
            out.add(Path(raw).name)
            out.add(Path(raw).stem)
    return sorted(s for s in out if len(s) >= 4)


def build_export(cfg: ExportConfig) -> dict[str, bytes]:
    """All output files (relative path -> bytes), after every privacy and blinding check."""
    cands, x, y, data_path = load_candidates(cfg.runs, cfg.task, cfg.data)
    if cfg.readers < 1:
        raise UserError("--readers must be at least 1")
    chosen, stratum = select(cands, cfg.n, cfg.seed, cfg.stratify, cfg.score_metric)
    ids = [c.item_id for c in chosen]
    x_side = assign_sides(ids, cfg.seed)
    oid = opaque_ids(ids, cfg.seed, cfg.task)
    resolver = ImageResolver.from_args(cfg.image_root or data_path.parent, cfg.image_map)
    readers = [f"R{k}" for k in range(1, cfg.readers + 1)]

    blind: dict[str, BlindItem] = {}
    key_items: list[dict[str, Any]] = []
    scrub_log: list[dict[str, Any]] = []
    for c in tqdm(sorted(chosen, key=lambda c: oid[c.item_id]), desc="reader-study export",
                  unit="item", disable=None):
        o = oid[c.item_id]
        sx, sy = scrub(c.text_x), scrub(c.text_y)
        task_input = " ".join(c.task_input.split())
        text_a, text_b = (sx.text, sy.text) if x_side[c.item_id] == "A" else (sy.text, sx.text)
        where = f"{c.where} (task {cfg.task}, item {c.item_id})"
        _guard_identifiers({"input": task_input, "x_text": sx.text, "y_text": sy.text}, where)
        if not sx.text.strip() or not sy.text.strip():
            raise UserError(f"{where}: a text is empty after scrubbing; choose other items "
                            "(another --seed) or fix the run")
        # Summarization readers compare texts against the findings: no images, as in the paper.
        show = cfg.thumbnails and cfg.task == "findings_generation"
        images = _images(c, o, resolver) if show else ()
        blind[o] = BlindItem(o, task_input, text_a, text_b, images)
        key_items.append({
            "opaque_id": o, "item_id": c.item_id, "dataset": c.dataset,
            "cluster_id": c.cluster_id, "stratum": stratum[c.item_id],
            "x_side": x_side[c.item_id], "images": {i: raw for (i, _), raw in
                                                     zip(images, c.image_paths, strict=False)},
            "metrics_x": c.metrics_x, "metrics_y": c.metrics_y, "source_row": c.where})
        scrub_log.append({"opaque_id": o, "x": {"original": c.text_x, **asdict(sx)},
                          "y": {"original": c.text_y, **asdict(sy)}})

    sid = study_id({"task": cfg.task, "seed": cfg.seed, "items": sorted(ids),
                    "x": x.results_sha256, "y": y.results_sha256 or y.name,
                    "readers": len(readers)})
    orders = {r: reader_order(sorted(blind), cfg.seed, r) for r in readers}
    files: dict[str, bytes] = {}
    for r in readers:
        items = [blind[o] for o in orders[r]]
        files[f"packets/{r}.csv"] = packet_csv(sid, r, items).encode()
        files[f"packets/{r}.html"] = packet_html(sid, r, cfg.task, items).encode()
    design_order = [blind[o] for o in sorted(blind)]
    files["redcap/data_dictionary.csv"] = dictionary_csv(sid, cfg.task, design_order).encode()
    files["redcap/import_template.csv"] = import_template_csv(
        sid, cfg.task, design_order, readers).encode()
    for it in design_order:
        for img_id, png in it.images:
            files[f"redcap/images/{img_id}.png"] = png

    forbidden = _forbidden_strings(chosen, [x.name, y.name, *(str(x.model.get(k) or "")
                                                              for k in ("model_id", "adapter"))])
    for rel, data in files.items():
        if rel.endswith(".png"):
            continue
        text = data.decode("utf-8").casefold()
        leaked = [s for s in forbidden if s.casefold() in text]
        if leaked:
            raise UserError(f"{rel} would contain {leaked[0]!r} (a system name, item id or image "
                            "file name), which unblinds the study; refusing to export")

    balance = {"x_on_A": sum(v == "A" for v in x_side.values()),
               "x_on_B": sum(v == "B" for v in x_side.values())}
    key = {
        "format": KEY_FORMAT, "study_id": sid, "task": cfg.task, "seed": cfg.seed,
        "n_items": len(chosen), "readers": readers, "reader_orders": orders,
        "stratify": cfg.stratify, "score_metric": cfg.score_metric if cfg.stratify == "score"
        else None, "x": asdict(x), "y": asdict(y), "attributes": list(ATTRIBUTES),
        "scale": {str(k): v for k, v in SCALE.items()},
        "score_for_x": {"A": {str(k): score_for_x(k, "A") for k in SCALE},
                        "B": {str(k): score_for_x(k, "B") for k in SCALE}},
        "balance": balance, "data_file": str(data_path),
        "data_sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
        "items": key_items,
    }
    files["key/key.json"] = _json(key)
    files["key/scrub_log.json"] = _json({"study_id": sid, "items": scrub_log})
    files["manifest.json"] = _json({
        "study_id": sid, "task": cfg.task, "n_items": len(chosen), "n_readers": len(readers),
        "files": [{"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                  for rel, data in sorted(files.items())],
        "note": "key/ un-blinds the study: keep it away from the readers",
    })
    return files


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_export(cfg: ExportConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    if (out / "key" / "key.json").exists() and not cfg.force:
        raise UserError(f"{out} already holds a reader study (key/key.json); choose another "
                        "--out or pass --force to overwrite it")
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
