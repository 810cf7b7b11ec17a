"""The CheXbench questions, built from studies whose findings are chosen to fit each question.

Every builder returns samples in the official data.json shape (`data_source`, `image_path`,
`question`, `option_0..option_3` with null for absent options, `answer`). Answer positions are
balanced: each block of k items uses every position once, in a seeded order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from harness.phantom.attributes import DISEASES, NO_FINDING, Findings, sample_labels
from harness.phantom.studies import Study, StudyFactory

YES, NO = "Yes", "No"  # one capitalisation everywhere (the fairness protocol's "Yes"/"No")
REASONING_QUESTION = "Which finding is in this chest X-ray?"
VIEW_OPTION = {"AP": "AP", "PA": "PA", "LATERAL": "Lateral", "LL": "LL"}
# Findings that look alike in a phantom: never a negative for each other.
CONFUSABLE = {"pneumonia": {"consolidation"}, "consolidation": {"pneumonia"}}
LUNG_FINDINGS = (
    "pleural effusion",
    "pneumothorax",
    "consolidation",
    "pneumonia",
    "edema",
    "atelectasis",
    "lung lesion",
)
CHEXPERT_BINARY = ("cardiomegaly", "pleural effusion", "edema", "consolidation", "atelectasis")

Sample = dict[str, Any]


def sample(study: Study, question: str, options: list[str], answer: int) -> Sample:
    if not 2 <= len(options) <= 4 or not 0 <= answer < len(options):
        raise ValueError(f"bad phantom item: {options!r}, answer {answer}")
    out: Sample = {
        "data_source": study.data_source,
        "image_path": "|".join(study.image_paths),
        "question": question,
    }
    for k in range(4):
        out[f"option_{k}"] = options[k] if k < len(options) else None
    out["answer"] = answer
    return out


def balanced_positions(rng: np.random.Generator, k: int) -> Iterator[int]:
    while True:
        yield from (int(p) for p in rng.permutation(k))


def place(
    rng: np.random.Generator, truth: str, distractors: list[str], position: int
) -> tuple[list[str], int]:
    others = [distractors[int(i)] for i in rng.permutation(len(distractors))]
    return others[:position] + [truth] + others[position:], position


def frontal_view(rng: np.random.Generator) -> str:
    return "AP" if rng.random() < 0.3 else "PA"


def extra_labels(rng: np.random.Generator, exclude: set[str], k_max: int = 1) -> set[str]:
    """A few unrelated co-findings, so a question cannot be answered by 'anything abnormal'.
    Taken in canonical order: a set's order changes with each process's string hashing."""
    drawn = sample_labels(rng)
    pool = [d for d in DISEASES if d in drawn and d not in exclude]
    return set(pool[:k_max])


class TaskBuilder:
    def __init__(self, factory: StudyFactory, seed: int) -> None:
        self.factory = factory
        self.seed = seed

    def rng(self, name: str) -> np.random.Generator:
        """One stream per task, so adding a task never changes the others' items."""
        return np.random.default_rng(
            [self.seed, zlib.crc32(self.factory.split.encode()), zlib.crc32(name.encode())]
        )

    # --- View classification -------------------------------------------------------------
    def view_classification(self, dataset: str, n: int) -> list[Sample]:
        views = ("AP", "PA", "LATERAL", "LL") if dataset == "mimic_cxr" else ("AP", "PA", "LATERAL")
        rng = self.rng(f"view/{dataset}")
        pos, which = balanced_positions(rng, len(views)), balanced_positions(rng, len(views))
        out = []
        for _ in range(n):
            view = views[next(which)]
            study = self.factory.new(dataset, sample_labels(rng), (view,), rng)
            truth = VIEW_OPTION[view]
            options, answer = place(
                rng, truth, [VIEW_OPTION[v] for v in views if v != view], next(pos)
            )
            out.append(sample(study, "What is the view of this chest X-ray?", options, answer))
        return out

    # --- Binary disease classification --------------------------------------------------
    def binary(self, dataset: str, n: int, targets: tuple[str, ...]) -> list[Sample]:
        rng = self.rng(f"binary/{dataset}")
        positive = balanced_positions(rng, 2)
        out = []
        for i in range(n):
            target = targets[i % len(targets)]
            yes = next(positive) == 0
            exclude = {target} | CONFUSABLE.get(target, set())
            labels = extra_labels(rng, exclude) | ({target} if yes else set())
            study = self.factory.new(dataset, labels, (frontal_view(rng),), rng)
            out.append(
                sample(
                    study, f"Does this chest X-ray contain {target}?", [YES, NO], 0 if yes else 1
                )
            )
        return out

    # --- Single / multiple disease identification ---------------------------------------
    def _views(self, dataset: str, i: int, rng: np.random.Generator) -> tuple[str, ...]:
        # Every fourth MIMIC-CXR study comes as frontal|lateral, like the official file.
        if dataset == "mimic_cxr" and i % 4 == 3:
            return (frontal_view(rng), "LATERAL")
        return (frontal_view(rng),)

    def single_disease(self, dataset: str, n: int) -> list[Sample]:
        rng = self.rng(f"single/{dataset}")
        pos = balanced_positions(rng, 4)
        vocabulary = (NO_FINDING, *DISEASES)
        out = []
        for i in range(n):
            truth = vocabulary[i % len(vocabulary)]
            labels = set() if truth == NO_FINDING else {truth}
            study = self.factory.new(dataset, labels, self._views(dataset, i, rng), rng)
            banned = {truth} | CONFUSABLE.get(truth, set())
            pool = [d for d in vocabulary if d not in banned]
            distractors = [pool[int(j)] for j in rng.choice(len(pool), 3, replace=False)]
            options, answer = place(rng, truth, distractors, next(pos))
            out.append(sample(study, "Which finding is in this chest X-ray?", options, answer))
        return out

    def multi_disease(self, dataset: str, n: int) -> list[Sample]:
        rng = self.rng(f"multi/{dataset}")
        pos = balanced_positions(rng, 4)
        out = []
        for i in range(n):
            k = 2 + int(rng.integers(2))
            present = sorted(rng.choice(len(DISEASES), k, replace=False).tolist())
            labels = [DISEASES[j] for j in present]
            study = self.factory.new(dataset, set(labels), self._views(dataset, i, rng), rng)
            truth = ", ".join(labels)
            distractors: list[str] = []
            absent = [d for d in DISEASES if d not in labels]
            while len(distractors) < 3:
                # Same size as the truth, and at least one finding the image does not show.
                swap = int(rng.integers(1, k + 1))
                kept = [labels[j] for j in sorted(rng.choice(k, k - swap, replace=False))]
                added = [absent[j] for j in rng.choice(len(absent), swap, replace=False)]
                option = ", ".join(d for d in DISEASES if d in set(kept) | set(added))
                if option != truth and option not in distractors:
                    distractors.append(option)
            options, answer = place(rng, truth, distractors, next(pos))
            out.append(sample(study, "Which findings are in this chest X-ray?", options, answer))
        return out

    # --- Visual question answering -------------------------------------------------------
    def rad_restruct(self, n: int) -> list[Sample]:
        rng = self.rng("vqa/rad_restruct")
        pos = balanced_positions(rng, 4)
        out: list[Sample] = []
        while len(out) < n:
            labels = sample_labels(rng) or {DISEASES[int(rng.integers(len(DISEASES)))]}
            study = self.factory.new("rad_restruct", labels, ("PA",), rng)
            questions = rad_restruct_questions(study.findings, rng, lambda: next(pos))
            for q, options, answer in questions[:2]:
                if len(out) < n:
                    out.append(sample(study, q, options, answer))
        return out

    def slake(self, n: int) -> list[Sample]:
        rng = self.rng("vqa/slake")
        yes_no = balanced_positions(rng, 2)
        out: list[Sample] = []
        i = 0
        while len(out) < n:
            target = tuple(SLAKE_TARGETS)[i % len(SLAKE_TARGETS)]
            i += 1
            yes = next(yes_no) == 0
            labels = extra_labels(rng, {target}) | ({target} if yes else set())
            study = self.factory.new("slake", labels, (frontal_view(rng),), rng)
            for q, options, answer in slake_questions(study.findings, target):
                if len(out) < n:
                    out.append(sample(study, q, options, answer))
        return out

    # --- Image-text reasoning (hard negatives differing in one word) -----------------------
    def image_text_reasoning(self, dataset: str, n: int) -> list[Sample]:
        rng = self.rng(f"reasoning/{dataset}")
        pos = balanced_positions(rng, 2)
        out = []
        for i in range(n):
            kind = REASONING_KINDS[i % len(REASONING_KINDS)]
            a, b = kind.values
            value = a if rng.random() < 0.5 else b
            study = self.factory.new(
                dataset, kind.labels, (frontal_view(rng),), rng, **kind.overrides(value)
            )
            truth, wrong = kind.phrase(value), kind.phrase(b if value == a else a)
            options, answer = place(rng, truth, [wrong], next(pos))
            out.append(sample(study, REASONING_QUESTION, options, answer))
        return out


SLAKE_TARGETS = {
    "cardiomegaly": "cardiomegaly",
    "pleural effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "lung lesion": "a nodule",
}  # label -> wording


def slake_questions(f: Findings, target: str) -> list[tuple[str, list[str], int]]:
    """SLAKE's closed questions about one study: is `target` shown, and is the lung healthy."""
    present = set(f.labels())
    healthy = not present & set(LUNG_FINDINGS)
    return [
        (
            f"Does this image show {SLAKE_TARGETS[target]}?",
            [YES, NO],
            0 if target in present else 1,
        ),
        ("Is the lung healthy?", [YES, NO], 0 if healthy else 1),
    ]


def rad_restruct_questions(
    f: Findings, rng: np.random.Generator, position: Callable[[], int]
) -> list[tuple[str, list[str], int]]:
    """Questions with 2, 3 or 4 options about one study, most specific first."""
    qs: list[tuple[str, list[str], int]] = []
    if f.effusion:
        size = f.effusion_size or "small"
        opts = ["small", "moderate", "large"]
        qs.append(("How large is the pleural effusion?", opts, opts.index(size)))
    if f.pneumothorax:
        opts = ["left", "right", "both"]
        qs.append(("On which side is the pneumothorax?", opts, opts.index(f.pneumothorax)))
    side_findings = side_map(f)
    for side in ("left", "right"):
        present = side_findings[side]
        if len(present) == 1:
            absent = [
                d
                for d in LUNG_FINDINGS
                if d not in present and d not in CONFUSABLE.get(present[0], set())
            ]
            distractors = [absent[int(j)] for j in rng.choice(len(absent), 3, replace=False)]
            options, answer = place(rng, present[0], distractors, position())
            qs.append((f"Which abnormality is in the {side} lung?", options, answer))
    side = ("left", "right")[int(rng.integers(2))]
    qs.append(
        (
            f"Are there any abnormalities in the {side} lung?",
            [YES, NO],
            0 if side_findings[side] else 1,
        )
    )
    qs.append(("Is the heart enlarged?", [YES, NO], 0 if f.cardiomegaly else 1))
    return qs


def side_map(f: Findings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"left": [], "right": []}
    for label, side in (
        ("pleural effusion", f.effusion),
        ("pneumothorax", f.pneumothorax),
        ("consolidation", f.consolidation),
        ("pneumonia", f.pneumonia),
        ("edema", "bilateral" if f.edema else None),
        ("atelectasis", f.atelectasis),
        ("lung lesion", f.lesion),
    ):
        for s in ("left", "right"):
            if side in (s, "bilateral"):
                out[s].append(label)
    return out


class ReasoningKind:
    def __init__(
        self,
        labels: set[str],
        attr: str,
        values: tuple[str, str],
        template: str,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.labels, self.attr, self.values = frozenset(labels), attr, values
        self.template, self.extra = template, extra or {}

    def overrides(self, value: str) -> dict[str, object]:
        return {**self.extra, self.attr: value}

    def phrase(self, value: str) -> str:
        return self.template.format(value)


REASONING_KINDS = (
    ReasoningKind({"pleural effusion"}, "effusion", ("left", "right"), "{}-sided pleural effusion"),
    ReasoningKind({"pleural effusion"}, "effusion_size", ("small", "large"), "{} pleural effusion"),
    ReasoningKind(
        {"pneumothorax"},
        "pneumothorax",
        ("left", "right"),
        "{} pneumothorax",
        {"pneumothorax_size": "large"},
    ),
    ReasoningKind({"cardiomegaly"}, "heart", ("mild", "severe"), "{} cardiomegaly"),
    ReasoningKind(set(), "elevated_diaphragm", ("left", "right"), "elevated {} hemidiaphragm"),
    ReasoningKind(
        {"consolidation"},
        "consolidation_lobe",
        ("upper", "lower"),
        "right {} lobe consolidation",
        {"consolidation": "right"},
    ),
    ReasoningKind({"edema"}, "edema", ("mild", "severe"), "{} pulmonary edema"),
    ReasoningKind({"lung lesion"}, "lesion", ("left", "right"), "nodule in the {} lung"),
)
