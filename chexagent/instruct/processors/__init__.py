"""Dataset processors: each reads one public dataset's official metadata layout and yields
CheXinstruct instances. Keys are what `--source NAME=DIR` accepts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from chexagent.instruct.processors import (
    chestxray14,
    chexpert,
    mimic_cxr,
    openi,
    phantom,
    rsna,
    siim,
    vqa,
)
from chexagent.instruct.schema import Instance

Processor = Callable[[Path, int], Iterator[Instance]]

PROCESSORS: dict[str, Processor] = {
    "chexpert": chexpert.process,
    "mimic-cxr": mimic_cxr.process,
    "openi": openi.process,
    "rsna": rsna.process,
    "siim": siim.process,
    "chestxray14": chestxray14.process,
    "vqa-rad": vqa.process_vqa_rad,
    "slake": vqa.process_slake,
    "phantom": phantom.process,
}
