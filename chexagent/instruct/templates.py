"""Ten hand-written instruction templates per task format (paper section 3, "Task Instruction
Creation"). Placeholders in angle brackets are filled per instance.

Images are not a placeholder in the text: `chexagent.prompting.build_inputs` always puts the
image slots before the prompt, so `<IMAGE>` in the paper's templates corresponds to that
position. Template 0 of every multiple-choice format is CheXbench's own wording (Figure 7), so
the instruction-tuned model sees exactly the benchmark's question among its training prompts.
"""

from __future__ import annotations

import random
import re

TEMPLATES: dict[str, tuple[str, ...]] = {
    "view": (
        "What is the view of this chest X-ray?",
        "Which view is this chest X-ray taken in?",
        "Identify the projection of this chest radiograph.",
        "What is the view of this chest X-ray? Options: <OPTIONS>",
        "Is this chest radiograph AP, PA or lateral?",
        "Determine the view position of the given chest X-ray.",
        "From which direction was this chest X-ray acquired? Options: <OPTIONS>",
        "Classify the view of this CXR.",
        "Name the view of the given radiograph.",
        "Which of the following is the view of this image: <OPTIONS>?",
    ),
    "disease_binary": (
        "Does this chest X-ray contain <DISEASE>?",
        "Is there any evidence of <DISEASE> in this chest X-ray?",
        "Does the patient have <DISEASE>?",
        "Is <DISEASE> present in this image?",
        "Given the chest X-ray, diagnose if <DISEASE> exists.",
        "Answer yes or no: does this radiograph show <DISEASE>?",
        "Can you see <DISEASE> on this CXR?",
        "Is this chest X-ray positive for <DISEASE>? Options: <OPTIONS>",
        "Does this image contain <DISEASE>? Options: <OPTIONS>",
        "Check this chest X-ray for <DISEASE>.",
    ),
    "disease_single": (
        "Which finding is in this chest X-ray?",
        "Which of the following findings is present in this chest X-ray?",
        "Identify the finding in this chest radiograph.",
        "Which finding is in this chest X-ray? Options: <OPTIONS>",
        "Select the finding shown in this CXR from: <OPTIONS>.",
        "What is the main finding in this image?",
        "Which abnormality does this chest X-ray show?",
        "Pick the finding present in the given chest X-ray.",
        "What does this chest radiograph show? Options: <OPTIONS>",
        "Name the finding visible in this chest X-ray.",
    ),
    "disease_multi": (
        "Which findings are in this chest X-ray?",
        "Which of the following sets of findings are present in this chest X-ray?",
        "Identify all findings in this chest radiograph.",
        "Which findings are in this chest X-ray? Options: <OPTIONS>",
        "Select the findings shown in this CXR from: <OPTIONS>.",
        "List the findings present in this image.",
        "What abnormalities does this chest X-ray show?",
        "Pick the combination of findings in the given chest X-ray.",
        "What does this chest radiograph show? Options: <OPTIONS>",
        "Name every finding visible in this chest X-ray.",
    ),
    "findings_generation": (
        "Write the findings section for this chest X-ray.",
        "Describe the findings of this chest X-ray.",
        'Given the indication: "<INDICATION>", write a structured findings section for the CXR.',
        "Generate the findings of the given chest radiograph.",
        "What are the findings in this chest X-ray?",
        "Write a radiology findings section for this image.",
        "Describe what you see in this chest X-ray.",
        "Produce the findings for this CXR. Indication: <INDICATION>",
        "Report the findings of this chest radiograph.",
        "Examine the chest X-ray and write its findings.",
    ),
    "impression_generation": (
        "Write the impression section for this chest X-ray.",
        "What is the impression of this chest X-ray?",
        "Generate the impression of the given chest radiograph.",
        "Summarize this chest X-ray in an impression.",
        "Give the radiologist's impression for this image.",
        "Write a one-line impression for this CXR.",
        "What is the overall conclusion from this chest X-ray?",
        "Provide the impression of this chest radiograph.",
        "State the impression for this chest X-ray.",
        "Write the impression of the given CXR.",
    ),
    "findings_summarization": (
        "Summarize the following Findings: <FINDINGS>",
        "Write the impression for these findings: <FINDINGS>",
        'Given the findings "<FINDINGS>", generate the impression.',
        "Findings: <FINDINGS> Impression?",
        "Condense these findings into an impression: <FINDINGS>",
        "What is the impression of a report with findings: <FINDINGS>",
        "Summarize: <FINDINGS>",
        "Turn the findings into an impression. <FINDINGS>",
        "Write a brief impression from the findings below. <FINDINGS>",
        "Here are the findings of a chest X-ray: <FINDINGS> Summarize them.",
    ),
    "vqa_closed": (
        "<QUESTION>",
        "<QUESTION> Options: <OPTIONS>",
        "Answer the question about this chest X-ray: <QUESTION>",
        "Given the image, choose one option from <OPTIONS> to answer: <QUESTION>",
        "Question: <QUESTION> Choose from: <OPTIONS>.",
        "Look at the chest X-ray and answer. <QUESTION>",
        "<QUESTION> Answer with one of: <OPTIONS>.",
        "Based on the radiograph, <QUESTION>",
        "Please answer: <QUESTION>",
        "Choose the correct answer. <QUESTION> Options: <OPTIONS>",
    ),
    "vqa_open": (
        "<QUESTION>",
        "Answer the question about this chest X-ray: <QUESTION>",
        "Question: <QUESTION>",
        "Look at the chest X-ray and answer. <QUESTION>",
        "Based on the radiograph, <QUESTION>",
        "Please answer: <QUESTION>",
        "Given the image, <QUESTION>",
        "<QUESTION> Answer briefly.",
        "Using the chest X-ray, answer: <QUESTION>",
        "Answer this question about the image: <QUESTION>",
    ),
    "pneumothorax_segmentation": (
        "Segment the region of pneumothorax in this chest X-ray.",
        "Where is the pneumothorax in this image?",
        "Locate the pneumothorax on this chest radiograph.",
        "Give the bounding box of the pneumothorax.",
        "Find the pneumothorax region in this CXR.",
        "Outline the pneumothorax in the given chest X-ray.",
        "Segment pneumothorax.",
        "Mark the area of pneumothorax on this radiograph.",
        "Which region of this chest X-ray shows pneumothorax?",
        "Localize the pneumothorax in this image.",
    ),
}

_PLACEHOLDER = re.compile(r"<([A-Z]+)>")


def render(fmt: str, index: int, **fields: str) -> str:
    """Fill template `index` of `fmt`; a placeholder without a value is an error, not a blank."""
    template = TEMPLATES[fmt][index]
    values = {k.upper(): v for k, v in fields.items()}

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template {fmt}[{index}] needs <{m.group(1)}>")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(fill, template)


def usable_indices(fmt: str, **fields: str) -> list[int]:
    """Templates whose placeholders the instance can fill (no indication -> skip those)."""
    have = {k.upper() for k, v in fields.items() if v}
    return [i for i, t in enumerate(TEMPLATES[fmt]) if set(_PLACEHOLDER.findall(t)) <= have]


def pick(fmt: str, rng: random.Random, **fields: str) -> tuple[int, str]:
    idx = rng.choice(usable_indices(fmt, **fields))
    return idx, render(fmt, idx, **fields)


def format_options(options: list[str]) -> str:
    return ", ".join(options)
