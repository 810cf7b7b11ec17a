"""Mapping the official file's image paths onto the user's own copies of the datasets.

The official paths point into the authors' folders (``data/mimic-cxr/files/...``), so a user
gives ``--image-root DIR`` and, when their layout differs, a YAML map from path prefix or
``data_source`` to a local folder::

    prefixes:                      # longest matching prefix wins; the rest of the path is kept
      data/mimic-cxr/: /datasets/mimic-cxr-jpg/2.0.0/
    sources:                       # data_source -> folder; the authors' "data/<name>/" is dropped
      OpenI: /datasets/openi/
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from PIL import Image

from harness.errors import UserError
from harness.radiograph import RadiographError, decode, pixel_limit
from harness.taxonomy import resolve_dataset

_AUTHORS_ROOT = re.compile(r"^(?:\./)?data/[^/]+/")


class ImageMapError(UserError, ValueError):
    """An --image-map file that cannot be read or names an unknown data source."""


@dataclass(frozen=True)
class ImageResolver:
    image_root: Path | None = None
    prefixes: tuple[tuple[str, Path], ...] = ()
    sources: dict[str, Path] = field(default_factory=dict)  # dataset slug -> folder

    @classmethod
    def from_args(
        cls, image_root: str | Path | None, image_map: str | Path | None = None
    ) -> ImageResolver:
        prefixes: list[tuple[str, Path]] = []
        sources: dict[str, Path] = {}
        if image_map:
            map_path = Path(image_map)
            try:
                spec = yaml.safe_load(map_path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ImageMapError(f"{map_path}: cannot read image map ({exc})") from exc
            if not isinstance(spec, dict) or set(spec) - {"prefixes", "sources"}:
                raise ImageMapError(f"{map_path}: expected keys 'prefixes' and/or 'sources'")
            for prefix, folder in (spec.get("prefixes") or {}).items():
                prefixes.append((str(prefix), Path(str(folder)).expanduser()))
            for source, folder in (spec.get("sources") or {}).items():
                dataset = resolve_dataset(str(source))
                if dataset is None:
                    raise ImageMapError(f"{map_path}: unknown data_source {source!r}")
                sources[dataset.slug] = Path(str(folder)).expanduser()
        prefixes.sort(key=lambda p: -len(p[0]))
        return cls(Path(image_root).expanduser() if image_root else None, tuple(prefixes), sources)

    def resolve(self, raw: str, dataset_slug: str | None = None) -> Path:
        """The local file for one path as written in data.json (which may not exist)."""
        for prefix, folder in self.prefixes:
            if raw.startswith(prefix):
                return folder / raw[len(prefix) :]
        if dataset_slug in self.sources:
            return self.sources[dataset_slug] / _AUTHORS_ROOT.sub("", raw)
        path = Path(raw)
        if path.is_absolute():
            return path
        return (self.image_root / raw) if self.image_root else path


def check_image(path: Path) -> str | None:
    """None when the image decodes, else a short reason (missing / unreadable (why)).

    Decodes fully through `decode`, the function the model's pixels come from, so a file that
    would fail mid-run (a multi-frame DICOM, a truncated PNG) fails the pre-flight instead.
    """
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "missing"
    return _decode_problem(str(path), st.st_mtime_ns, st.st_size, pixel_limit())


@lru_cache(maxsize=1 << 16)
def _decode_problem(path: str, mtime_ns: int, size: int, limit: int) -> str | None:
    """Keyed by the file's mtime and size: the pre-flight and lm-eval's task loader check the
    same images in one process, and a large set should be decoded once for that, not twice.
    The size limit is part of the key: a file refused under one limit may pass another."""
    try:
        decode(path)
    except RadiographError as exc:
        return f"unreadable ({exc.reason})"
    return None


def open_image(path: str | Path) -> Image.Image:
    """Decode to 8-bit RGB (docs/images.md). Callers drop the copy after encoding."""
    return decode(path)


@dataclass(frozen=True)
class ImageRef:
    """An image named by its file, decoded only when a model needs its pixels.

    Tasks hand these to the engine instead of decoded PIL images: a full CheXbench run would
    otherwise hold thousands of decoded radiographs (and open file handles) in memory at once.
    """

    path: str

    def open(self) -> Image.Image:
        return open_image(self.path)

    @property
    def fingerprint(self) -> str:
        return f"file:{self.path}"
