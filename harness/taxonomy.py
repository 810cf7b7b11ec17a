"""The one table of CheXbench task and dataset names.

The official ``data.json`` keys, the paper's names and our lm-eval task names disagree
(e.g. the file's "Fine-Grained Reasoning" is the paper's "Image-Text Reasoning"), so every
other module resolves names through this table and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskType:
    slug: str  # used in lm-eval task names: chexbench_<slug>_<dataset>
    title: str  # the paper's name
    data_keys: tuple[str, ...]  # keys that may appear in data.json, first is canonical
    kind: str  # "perception" or "text"


@dataclass(frozen=True)
class Dataset:
    slug: str
    title: str
    data_sources: tuple[str, ...]  # spellings of `data_source` seen or expected in data.json


def subtask_name(task_slug: str, dataset_slug: str) -> str:
    """The lm-eval task of one (task type, dataset) pair: `chexbench_<task>_<dataset>`."""
    return f"chexbench_{task_slug}_{dataset_slug}"


@dataclass(frozen=True)
class Subtask:
    task: TaskType
    dataset: Dataset
    paper_n: int | None  # Table 9 sample count
    paper_options: str | None  # Table 9 option count ("4", "2-4")

    @property
    def name(self) -> str:
        return subtask_name(self.task.slug, self.dataset.slug)


TASK_TYPES: tuple[TaskType, ...] = (
    TaskType("view_classification", "View Classification", ("View Classification",), "perception"),
    TaskType(
        "binary_disease_classification",
        "Binary Disease Classification",
        ("Binary Disease Classification",),
        "perception",
    ),
    TaskType(
        "single_disease_identification",
        "Single Disease Identification",
        ("Single Disease Identification",),
        "perception",
    ),
    TaskType(
        "multi_disease_identification",
        "Multi-Disease Identification",
        (
            "Multiple Disease Identification",
            "Multi-Disease Identification",
            "Multi Disease Identification",
        ),
        "perception",
    ),
    TaskType(
        "visual_question_answering",
        "Visual Question Answering",
        ("Visual Question Answering", "Visual-Question-Answering", "VQA"),
        "perception",
    ),
    TaskType(
        "image_text_reasoning",
        "Image-Text Reasoning",
        ("Fine-Grained Reasoning", "Image-Text Reasoning", "Image Text Reasoning"),
        "perception",
    ),
    TaskType("findings_generation", "Findings Generation", ("Findings Generation",), "text"),
    TaskType(
        "findings_summarization", "Findings Summarization", ("Findings Summarization",), "text"
    ),
)

# Keys in data.json that are not part of the paper's 8 tasks; loaders ignore them.
IGNORED_DATA_KEYS: tuple[str, ...] = ("Temporal Classification", "Phrase Grounding")

DATASETS: tuple[Dataset, ...] = (
    Dataset("mimic_cxr", "MIMIC-CXR", ("MIMIC-CXR", "mimic-cxr", "MIMIC_CXR", "mimic")),
    Dataset("chexpert", "CheXpert", ("CheXpert", "chexpert", "CheXpert-Plus", "chexpert-public")),
    Dataset("siim", "SIIM", ("SIIM", "siim", "SIIM-ACR", "siim-acr-pneumothorax")),
    Dataset("rsna", "RSNA", ("RSNA", "rsna", "RSNA-Pneumonia", "rsna-pneumonia")),
    Dataset("openi", "OpenI", ("OpenI", "openi", "Open-I", "IU-Xray", "iu_xray")),
    Dataset("rad_restruct", "Rad-Restruct", ("Rad-Restruct", "rad-restruct", "RadRestruct")),
    Dataset("slake", "SLAKE", ("SLAKE", "slake", "Slake")),
    Dataset("private", "Private", ("Private", "private")),
)

_SUBTASK_ROWS: tuple[tuple[str, str, int | None, str | None], ...] = (
    ("view_classification", "mimic_cxr", 400, "4"),
    ("view_classification", "chexpert", 300, "3"),
    ("binary_disease_classification", "siim", 100, "2"),
    ("binary_disease_classification", "rsna", 100, "2"),
    ("binary_disease_classification", "chexpert", 233, "2"),
    ("single_disease_identification", "openi", 500, "4"),
    ("single_disease_identification", "mimic_cxr", 195, "4"),
    ("single_disease_identification", "chexpert", 169, "4"),
    ("multi_disease_identification", "openi", 807, "4"),
    ("multi_disease_identification", "mimic_cxr", 300, "4"),
    ("multi_disease_identification", "chexpert", 280, "4"),
    ("visual_question_answering", "rad_restruct", 899, "2-4"),
    ("visual_question_answering", "slake", 420, "2"),
    ("image_text_reasoning", "openi", 380, "2"),
    # Text tasks (Tables 3 and 4); sizes are not given in Table 9.
    ("findings_generation", "mimic_cxr", None, None),
    ("findings_generation", "private", None, None),
    ("findings_summarization", "mimic_cxr", None, None),
)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_TASK_BY_ALIAS = {_norm(a): t for t in TASK_TYPES for a in (t.slug, t.title, *t.data_keys)}
_DATASET_BY_ALIAS = {_norm(a): d for d in DATASETS for a in (d.slug, d.title, *d.data_sources)}
TASK_BY_SLUG = {t.slug: t for t in TASK_TYPES}
DATASET_BY_SLUG = {d.slug: d for d in DATASETS}
SUBTASKS: tuple[Subtask, ...] = tuple(
    Subtask(TASK_BY_SLUG[t], DATASET_BY_SLUG[d], n, o) for t, d, n, o in _SUBTASK_ROWS
)
SUBTASK_BY_NAME = {s.name: s for s in SUBTASKS}
PERCEPTION_SUBTASKS = tuple(s for s in SUBTASKS if s.task.kind == "perception")
TEXT_TASK_NAMES = {
    "findings_generation": "chexbench_findings_generation",
    "findings_summarization": "chexbench_findings_summarization",
}


def resolve_task(name: str) -> TaskType | None:
    """A task type from any of its spellings (data.json key, paper title, slug)."""
    return _TASK_BY_ALIAS.get(_norm(name))


def resolve_dataset(name: str) -> Dataset | None:
    """A dataset from any spelling of `data_source`, or None when unknown."""
    return _DATASET_BY_ALIAS.get(_norm(name))


def subtask_for(task_slug: str, dataset_slug: str) -> Subtask | None:
    return SUBTASK_BY_NAME.get(subtask_name(task_slug, dataset_slug))


def group_name(task: TaskType | str) -> str:
    """The lm-eval group of one task type: `chexbench_<slug>`."""
    return f"chexbench_{task.slug if isinstance(task, TaskType) else task}"


PERCEPTION_GROUP = "chexbench_perception"  # the mean over the six perception task types


# ---------------------------------------------------------------------------------------------
# Metrics: which way is better and which one headlines each task, in one table.
@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    higher_is_better: bool = True
    # The values the metric can take (None: unbounded on that side). Results validation
    # refuses a value or CI bound outside them: an accuracy of 1.7 is a typo or a forgery.
    bounds: tuple[float | None, float | None] = (0.0, 1.0)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("acc_chexbench", "Accuracy (mean token log-prob, official)"),
        Metric("acc", "Accuracy (summed log-prob, lm-eval)"),
        Metric("acc_norm", "Accuracy (log-prob per character, lm-eval)"),
        Metric("rougeL", "ROUGE-L"),
        # Rescaled with a baseline b: (F1 - b) / (1 - b), at most 1 and negative below b.
        Metric("bertscore_f1", "BERTScore F1", bounds=(None, 1.0)),
        Metric("chexbert_accuracy", "CheXbert accuracy"),
        Metric("chexbert_f1_micro14", "CheXbert micro-F1 (14)"),
        Metric("chexbert_f1_macro14", "CheXbert macro-F1 (14)"),
        Metric("chexbert_f1_micro5", "CheXbert micro-F1 (5)"),
        Metric("chexbert_f1_macro5", "CheXbert macro-F1 (5)"),
        Metric("radgraph_simple", "RadGraph F1 (simple)"),
        Metric("radgraph_partial", "RadGraph F1 (partial, RG_ER)"),
        Metric("radgraph_complete", "RadGraph F1 (complete)"),
        # A fitted linear combination of z-scored inputs: any real number.
        Metric("radcliq_v1", "RadCliQ-v1", higher_is_better=False, bounds=(None, None)),
        Metric("bertscore_paper", "BERT-S (paper)"),
        Metric("chexbert_score_paper", "CheXbert-S (paper)"),
        Metric("radgraph_score_paper", "RadGraph-S (paper)"),
    )
}

# The number each task reports first (Table 2 accuracy, Table 3 RadGraph, Table 4 ROUGE-L).
PERCEPTION_HEADLINE = "acc_chexbench"
TEXT_HEADLINES = {"findings_generation": "radgraph_partial", "findings_summarization": "rougeL"}


def metric_bounds(metric: str, kind: str) -> tuple[float | None, float | None]:
    """The range a metric's value and CI must lie in. Names outside the table are fractions in
    [0, 1] on perception subtasks (every perception score is a share of items) and only
    finite elsewhere (a new text metric's range is not known here)."""
    found = METRICS.get(metric)
    if found is not None:
        return found.bounds
    return (0.0, 1.0) if kind == "perception" else (None, None)


def higher_is_better(metric: str) -> bool:
    """Direction of a metric; names outside the table (judge win rates, F1 gaps' own blocks)
    are higher-is-better, the convention every results block follows unless listed here."""
    found = METRICS.get(metric)
    return found.higher_is_better if found else True
