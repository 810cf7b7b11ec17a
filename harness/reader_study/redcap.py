"""A REDCap data dictionary and import template for sites that run the study in REDCap.

The dictionary has one record per reader: the reader's id, then per case a descriptive field
(the input and the two texts), three radio questions named `<case>_<attribute>`, coded 1..5
exactly as in the CSV packets, and an optional `<case>_comment`, so a REDCap raw export is read
back by the same code.
"""

from __future__ import annotations

import html

from harness.reader_study.design import ATTRIBUTES, QUESTIONS, SCALE, TASK_INSTRUCTIONS
from harness.reader_study.packets import BlindItem, to_csv

# REDCap's data dictionary header, in REDCap's order.
DICTIONARY_COLUMNS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)
ANNOTATION_COLUMN = DICTIONARY_COLUMNS.index("Field Annotation")  # REDCap action tags
FIELD_TYPES = frozenset(
    {
        "text",
        "notes",
        "dropdown",
        "radio",
        "checkbox",
        "yesno",
        "truefalse",
        "file",
        "slider",
        "calc",
        "descriptive",
        "sql",
    }
)
DATA_FREE_TYPES = frozenset({"descriptive"})  # no column in the import template / export
COMMENT = "comment"  # the free-text field per case, `<case>_comment`, as in the packets


def choices() -> str:
    return " | ".join(f"{code}, {label}" for code, label in SCALE.items())


def form_name(task: str) -> str:
    return f"reader_study_{task}"


def field_name(opaque_id: str, attribute: str) -> str:
    return f"{opaque_id}_{attribute}"


def _row(**cells: str) -> list[str]:
    keys = {
        "name": 0,
        "form": 1,
        "section": 2,
        "type": 3,
        "label": 4,
        "choices": 5,
        "note": 6,
        "required": 12,
        "align": 13,
        "annotation": ANNOTATION_COLUMN,
    }
    row = [""] * len(DICTIONARY_COLUMNS)
    for key, value in cells.items():
        row[keys[key]] = value
    return row


def dictionary_rows(
    study_id: str, task: str, items: list[BlindItem], warning: str | None = None
) -> list[list[str]]:
    form = form_name(task)
    esc = html.escape
    rows = [
        list(DICTIONARY_COLUMNS),
        _row(name="record_id", form=form, type="text", label="Record ID"),
        _row(
            name="reader_id",
            form=form,
            type="text",
            label="Reader ID",
            required="y",
            note="as assigned by the study coordinator (R1, R2, ...)",
        ),
        _row(
            name="study_id",
            form=form,
            type="text",
            label="Study ID",
            annotation=f'@DEFAULT="{study_id}" @READONLY',
        ),
    ]
    if warning:  # a synthetic or random-weight run: said on top of the form, as in the packets
        rows.append(
            _row(
                name="demo_warning",
                form=form,
                type="descriptive",
                label=f"<p style='color:#b3261e'><b>{esc(warning)}</b></p>",
            )
        )
    for k, it in enumerate(items, 1):
        label = (
            f"<p>{esc(TASK_INSTRUCTIONS[task])}</p><p><b>Input:</b> {esc(it.task_input)}"
            f"</p><p><b>A:</b> {esc(it.text_a)}</p><p><b>B:</b> {esc(it.text_b)}</p>"
        )
        images = " ".join(f"{i}.png" for i, _ in it.images)
        rows.append(
            _row(
                name=f"{it.opaque_id}_case",
                form=form,
                section=f"Case {k} ({it.opaque_id})",
                type="descriptive",
                label=label,
                annotation=f"attach images: {images}" if images else "",
            )
        )
        for attr in ATTRIBUTES:
            rows.append(
                _row(
                    name=field_name(it.opaque_id, attr),
                    form=form,
                    type="radio",
                    label=f"{attr.capitalize()}: {QUESTIONS[attr]}",
                    choices=choices(),
                    required="y",
                    align="LH",
                )
            )
        rows.append(
            _row(
                name=field_name(it.opaque_id, COMMENT),
                form=form,
                type="notes",
                label="Comment (optional)",
            )
        )
    return rows


def import_columns(dictionary: list[list[str]], forms: list[str]) -> list[str]:
    """Columns of a REDCap import: every data field in order, then each form's _complete."""
    names = [r[0] for r in dictionary[1:] if r[3] not in DATA_FREE_TYPES]
    return names + [f"{f}_complete" for f in forms]


def dictionary_csv(
    study_id: str, task: str, items: list[BlindItem], warning: str | None = None
) -> str:
    # Action tags (`@DEFAULT="..." @READONLY`) start with "@" and must reach REDCap as written.
    rows = dictionary_rows(study_id, task, items, warning)
    return to_csv(rows, verbatim_columns=frozenset({ANNOTATION_COLUMN}))


def import_template_csv(
    study_id: str, task: str, items: list[BlindItem], readers: list[str]
) -> str:
    columns = import_columns(dictionary_rows(study_id, task, items), [form_name(task)])
    rows = [columns]
    for reader in readers:
        row = dict.fromkeys(columns, "")
        row.update(record_id=reader, reader_id=reader, study_id=study_id)
        rows.append([row[c] for c in columns])
    return to_csv(rows)
