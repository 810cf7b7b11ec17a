"""Hostile CheXbench data files: each one broke a run (a crash after the model loaded, or a
silently wrong score) before the loader refused it. The suite in tests/harness/ runs every case
through `chexbench data validate` and `chexbench run`; `python tests/support/helpers/hostile_data.py
DIR` writes them all to DIR for trying by hand.

Each case is a small valid file (one View Classification item, one real PNG) with one thing
made hostile. `expect` is a fragment of the one-line error; `task` / `item` are what the line
must name (None where the problem is the file itself).
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

TASK = "View Classification"
IMAGE = "files/p10/p10000032/s50000001/view.png"


def item(**overrides: Any) -> dict[str, Any]:
    base = {
        "data_source": "MIMIC-CXR",
        "image_path": IMAGE,
        "slice": "view",
        "question": "What is the view of this chest X-ray?",
        "option_0": "AP",
        "option_1": "PA",
        "option_2": "Lateral",
        "option_3": "LL",
        "answer": 1,
    }
    base.update(overrides)
    return base


def write_image(folder: Path, rel: str = IMAGE) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (48, 48), 90).save(path)
    return path


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True)


def _text(folder: Path, text: str | bytes) -> Path:
    path = folder / "data.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _items(folder: Path, *items: dict[str, Any], key: str = TASK) -> Path:
    return _text(folder, _dump({key: list(items)}))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height (one byte of image data): decoding it would need
    width * height * 3 bytes; reading its header needs none."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def _truncated_jpeg(folder: Path) -> Path:
    path = folder / IMAGE.replace(".png", ".jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise((64, 64), 40).convert("RGB").save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    return _items(folder, item(image_path=IMAGE.replace(".png", ".jpg")))


def _huge_png(folder: Path) -> Path:
    _png_header_only(folder / "files/p10/p10000032/s50000001/huge.png", 20000, 20000)
    return _items(folder, item(image_path="files/p10/p10000032/s50000001/huge.png"))


@dataclass(frozen=True)
class Case:
    write: Callable[[Path], Path]  # writes data.json (and images) into a folder; returns it
    expect: str  # fragment of the error line
    task: str | None = TASK  # the task key the line must name
    item: int | None = 0  # the item index the line must name
    stage: str = "data"  # "data": the loader; "image": the image check; "prompt": needs a model


CASES: dict[str, Case] = {
    "empty_file": Case(lambda d: _text(d, ""), "the file is empty", None, None),
    "empty_object": Case(lambda d: _text(d, "{}"), "no CheXbench items", None, None),
    "empty_task": Case(lambda d: _text(d, _dump({TASK: []})), "has no items", TASK, None),
    "option_gap": Case(
        lambda d: _items(d, item(option_1=None, answer=2)), "option_1 is null but option_2 is not"
    ),
    "option_gap_nan": Case(
        lambda d: _text(
            d, _dump({TASK: [item()]}).replace('"option_2": "Lateral"', '"option_2": NaN')
        ),
        "option_2 is NaN but option_3 is not",
    ),
    "task_under_two_aliases": Case(
        lambda d: _text(
            d,
            _dump(
                {
                    "Multiple Disease Identification": [item(question="Which?")],
                    "Multi-Disease Identification": [item(question="Which?")],
                }
            ),
        ),
        "both name Multi-Disease Identification",
        "Multi-Disease Identification",
        None,
    ),
    "duplicate_task_key": Case(
        lambda d: _text(
            d, "{" + f'"{TASK}": [{_dump(item())}], "{TASK}": [{_dump(item(answer=0))}]' + "}"
        ),
        "is given more than once",
        TASK,
        None,
    ),
    "duplicate_item_key": Case(
        lambda d: _text(
            d, _dump({TASK: [item()]}).replace('"answer": 1', '"answer": 1, "answer": 2')
        ),
        "key 'answer' is given more than once",
    ),
    "identical_options": Case(
        lambda d: _items(d, item(option_1="AP", option_2="AP", option_3="AP")),
        "option_0 and option_1 are the same option",
    ),
    "empty_option": Case(lambda d: _items(d, item(option_2="  ")), "option_2 is empty"),
    "lone_surrogate": Case(
        lambda d: _text(d, _dump({TASK: [item()]}).replace("this chest", "this \\ud800 chest")),
        "question is not valid Unicode",
    ),
    "not_utf8": Case(
        lambda d: _text(d, _dump({TASK: [item()]}).encode().replace(b"chest", b"ch\xffest")),
        "not UTF-8",
        None,
        None,
    ),
    "nested_200k_deep": Case(
        lambda d: _text(d, "[" * 200_000 + "]" * 200_000), "nested too deeply", None, None
    ),
    "nested_in_item": Case(
        lambda d: _items(d, item(slice=[[[[[[[["x"]]]]]]]])),
        "nested more than 8 levels deep in 'slice",
    ),
    "truncated_jpeg": Case(_truncated_jpeg, "image file is truncated", stage="image"),
    "huge_png": Case(_huge_png, "400,000,000 pixels is over the image size limit", stage="image"),
    "question_360kb": Case(
        lambda d: _items(d, item(question="Is this film normal? " * 18_000)),
        "reads at most",
        "chexbench_view_classification_mimic_cxr",
        stage="prompt",
    ),
}


def write_case(name: str, folder: Path) -> Path:
    """Write case `name` into `folder` (its image included); returns the data.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder)
    return CASES[name].write(folder)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-data")
    for case_name in CASES:
        print(write_case(case_name, out / case_name))
