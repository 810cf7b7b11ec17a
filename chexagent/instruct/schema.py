"""One CheXinstruct instance: an (image(s) or none, question, answer) triplet plus provenance.

`task` and `dataset` use the paper's Table 6/7 spelling, so `pair` ("(ViewClassification)
MIMIC-CXR") is the key of the sampling ratios and of the statistics report.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Split = Literal["train", "val", "test"]


class Instance(BaseModel):
    instance_id: str  # stable: "<dataset>/<task>/<source record>/<variant>"
    task: str  # Table 7 task name, e.g. "ImageClassification"
    dataset: str  # Table 7 dataset name, e.g. "CheXpert"
    split: Split
    images: list[str] = Field(default_factory=list)  # absolute paths, reading order
    question: str
    answer: str
    options: list[str] | None = None  # multiple choice: the answer is one of these
    template_format: str  # key into templates.TEMPLATES
    template_index: int
    patient_id: str | None = None
    study_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def pair(self) -> str:
        return pair_name(self.task, self.dataset)


def pair_name(task: str, dataset: str) -> str:
    return f"({task}){dataset}"
