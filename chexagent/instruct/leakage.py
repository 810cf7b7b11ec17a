"""The leakage guard: no CheXinstruct instance may show an image that a CheXbench item shows.

Images are matched two ways, because the benchmark's paths name the authors' folders while the
instances name the user's copies:
- by resolved path: each data.json path is mapped through the same `ImageResolver` the harness
  uses (`--image-root` / `--image-map`) and compared with the instance path after
  `Path.resolve()` (symlinks followed);
- by content: the SHA-256 of every benchmark image that exists locally. To keep this cheap on
  millions of training images, an instance image is hashed only when its byte size equals the
  size of some benchmark image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chexagent.instruct.schema import Instance
from harness.data import file_sha256, load_data
from harness.images import ImageResolver


@dataclass
class LeakageGuard:
    paths: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    sizes: set[int] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)

    @classmethod
    def from_benchmarks(
        cls, data_files: Iterable[str | Path], resolver: ImageResolver | None = None
    ) -> LeakageGuard:
        guard = cls()
        for data_file in data_files:
            data = load_data(data_file)
            res = resolver or ImageResolver(image_root=Path(data_file).resolve().parent)
            guard.sources.append(str(data_file))
            for item in [*data.perception, *data.text]:
                for raw in item.image_paths:
                    guard.add(res.resolve(raw, item.dataset))
        return guard

    def add(self, path: Path) -> None:
        self.paths.add(str(path.resolve()))
        if path.is_file():
            self.hashes.add(file_sha256(path))
            self.sizes.add(path.stat().st_size)

    def leaks(self, image: str) -> str | None:
        """'path' or 'content' when the image is a benchmark image, else None."""
        path = Path(image)
        if str(path.resolve()) in self.paths:
            return "path"
        if self.sizes and path.is_file() and path.stat().st_size in self.sizes:
            if file_sha256(path) in self.hashes:
                return "content"
        return None

    def filter(self, instances: Iterable[Instance]) -> list[Instance]:
        kept = []
        for inst in instances:
            hit = next(((img, how) for img in inst.images if (how := self.leaks(img))), None)
            if hit:
                self.removed.append(
                    {
                        "instance_id": inst.instance_id,
                        "image": hit[0],
                        "matched_by": hit[1],
                        "pair": inst.pair,
                    }
                )
            else:
                kept.append(inst)
        return kept
