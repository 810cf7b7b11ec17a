"""File names shaped like the official data sets', so image-root mapping is exercised for real.

Each split draws patient and file numbers from its own range, so a phantom "train" set never
shares a patient or an image with the "test" set of the same seed. Patient ids follow
`harness.data.cluster_id_for`: MIMIC-CXR `pNNNNNNNN` and CheXpert `patientNNNNN` come from the
path; for the other data sets the patient id is the study's first image path, which is what
`cluster_id_for` falls back to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SPLITS = ("test", "train")
# (test base, train base, capacity) per counter.
_RANGES = {
    "mimic_patient": (10_000_000, 15_000_000, 5_000_000),
    "mimic_study": (50_000_000, 55_000_000, 5_000_000),
    "chexpert_patient": (64_741, 1, 64_740),
    "other": (1, 500_001, 500_000),
}


@dataclass(frozen=True)
class StudyPaths:
    patient_id: str
    study_id: str
    image_paths: tuple[str, ...]


@dataclass
class PathNamer:
    split: str
    seed: int
    _counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    def _next(self, counter: str) -> int:
        test_base, train_base, capacity = _RANGES[counter]
        n = self._counters.get(counter, 0)
        if n >= capacity:
            raise ValueError(f"phantom {self.split} split ran out of {counter} numbers")
        self._counters[counter] = n + 1
        return (test_base if self.split == "test" else train_base) + n

    def _hex(self, *parts: object) -> str:
        return hashlib.sha256(
            ":".join(map(str, (self.seed, self.split, *parts))).encode()
        ).hexdigest()

    def study(self, dataset: str, views: list[str]) -> StudyPaths:
        """Paths for one study with one image per entry of `views`."""
        if dataset == "mimic_cxr":
            pid = f"p{self._next('mimic_patient')}"
            sid = f"s{self._next('mimic_study')}"
            folder = f"data/mimic-cxr/files/{pid[:3]}/{pid}/{sid}"
            paths = []
            for k in range(len(views)):
                h = self._hex(sid, k)
                paths.append(f"{folder}/{h[0:8]}-{h[8:16]}-{h[16:24]}-{h[24:32]}-{h[32:40]}.png")
            return StudyPaths(pid, sid, tuple(paths))
        if dataset == "chexpert":
            pid = f"patient{self._next('chexpert_patient'):05d}"
            folder = f"data/chexpert-public/{self.split}/{pid}/study1"
            paths = [
                f"{folder}/view{k + 1}_{'lateral' if v in ('LATERAL', 'LL') else 'frontal'}.png"
                for k, v in enumerate(views)
            ]
            return StudyPaths(pid, f"{pid}/study1", tuple(paths))
        n = self._next("other")
        if dataset == "openi":
            paths = [
                f"data/openi/images/CXR{n}_IM-{n % 10000:04d}-{1001 + 1000 * k}.png"
                for k in range(len(views))
            ]
        elif dataset == "siim":
            paths = [
                f"data/siim/png_images/1.2.276.0.7230010.3.1.4.8323329.{n}.{1517875000 + n}.{k}.png"
                for k in range(len(views))
            ]
        elif dataset == "rsna":
            h = self._hex("rsna", n)
            paths = [
                f"data/rsna/stage_2_{self.split}_images/{h[:8]}-{h[8:12]}-{h[12:16]}-"
                f"{h[16:20]}-{h[20:32]}{'' if k == 0 else f'_{k}'}.png"
                for k in range(len(views))
            ]
        elif dataset == "rad_restruct":
            paths = [
                f"data/rad-restruct/images/{n}{'' if k == 0 else f'_{k}'}.png"
                for k in range(len(views))
            ]
        elif dataset == "slake":
            paths = [
                f"data/slake/imgs/xmlab{n}/{'source' if k == 0 else f'source_{k}'}.png"
                for k in range(len(views))
            ]
        else:
            raise ValueError(f"no phantom path scheme for data set {dataset!r}")
        return StudyPaths(paths[0], f"{dataset}-{n}", tuple(paths))
