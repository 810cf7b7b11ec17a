"""lm-eval hooks for the CheXbench tasks: loading docs, images, prompts and per-item scores.

The data file is chosen at run time through the task metadata (`data`, `image_root`,
`image_map`, `skip_missing`), never baked into a YAML. Prompts here are model-agnostic (the
question, the indication, the findings); each model's template is applied by its adapter.
"""

from __future__ import annotations

from typing import Any

from harness.docs import build_docs
from harness.images import ImageRef
from harness.scoring import MissingTokenCount, correctness

# Stanford-AIMI/CheXagent evaluation_chexbench/axis_3_text_generation/
# run_findings_generation.py:34-38 and run_findings_summarization.py:33-36, verbatim.
GENERATION_PROMPT = (
    'Given the indication: "{indication}", write a structured findings section for the CXR.'
)
SUMMARIZATION_PROMPT = "Summarize the following Findings: {findings}"
# The official f-string has no other prompt for an item without an indication: a null field
# renders as "None", which is also what CheXinstruct wrote for a missing indication in training
# (data_chexinstruct/dataset_processors/mimic_cxr_struct.py:122-125).
MISSING_INDICATION = "None"


def load_docs(
    subtask: str,
    data: str | None = None,
    image_root: str | None = None,
    image_map: str | None = None,
    skip_missing: bool = False,
    truncations: dict[str, dict[str, int]] | None = None,
    **_: Any,
) -> dict:
    import datasets

    cuts = (truncations or {}).get(subtask)  # `chexbench run --truncate-prompts` decided these
    docs, _excluded = build_docs(subtask, data, image_root, image_map, skip_missing, cuts)
    return {"test": datasets.Dataset.from_list(docs)}


def doc_to_image(doc: dict) -> list[ImageRef]:
    return [ImageRef(p) for p in doc["image_paths"]]


def doc_to_text(doc: dict) -> str:
    return doc["question"]


def generation_text(doc: dict) -> str:
    return GENERATION_PROMPT.format(indication=doc.get("indication") or MISSING_INDICATION)


def summarization_text(doc: dict) -> str:
    return SUMMARIZATION_PROMPT.format(findings=doc["findings"])


def process_perception(doc: dict, results: list) -> dict[str, float]:
    try:
        return correctness(results, doc["options"], doc["answer"])
    except MissingTokenCount as exc:
        raise MissingTokenCount(
            f"dataset {doc.get('dataset')}, item {doc.get('item_id')}: {exc}"
        ) from None


def process_text(doc: dict, results: list[str]) -> dict[str, float]:
    """ROUGE-L after the official clean-up, the same numbers `harness.text_metrics` reports."""
    from harness.text_metrics.cleaning import clean_report
    from harness.text_metrics.rouge import rouge_l

    return {"rougeL": rouge_l([clean_report(results[0])], [clean_report(doc["reference"])])[0]}
