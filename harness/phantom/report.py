"""Report text written from the same attributes the images were drawn from.

Sentences only vary in wording (seeded), never in content, so a model could learn the mapping
from pixels to findings and from findings to impression.
"""

from __future__ import annotations

import numpy as np

from harness.phantom.attributes import Findings, Patient

DEVICE_SENTENCES = {
    "endotracheal tube": "Endotracheal tube terminates approximately 4 cm above the carina.",
    "central venous catheter": "Right internal jugular central venous catheter tip projects "
    "over the mid SVC.",
    "pacemaker": "Left-sided pacemaker with lead terminating in the right ventricle.",
}
SYMPTOMS = (
    "shortness of breath",
    "cough and fever",
    "chest pain",
    "hypoxia",
    "dyspnea on exertion",
    "follow-up of known lung disease",
)
QUESTIONS = (
    "Evaluate for pneumonia.",
    "Evaluate for acute cardiopulmonary process.",
    "Assess for effusion.",
    "Evaluate for interval change.",
    "Line placement.",
)


def _pick(rng: np.random.Generator, *options: str) -> str:
    return options[int(rng.integers(len(options)))]


def _side_word(side: str) -> str:
    return "bilateral" if side == "bilateral" else side


def indication(patient: Patient, rng: np.random.Generator) -> str:
    """MIMIC-style indication; MIMIC masks ages and names as '___'."""
    who = "man" if patient.sex == "male" else "woman"
    return f"___-year-old {who} with {_pick(rng, *SYMPTOMS)}. {_pick(rng, *QUESTIONS)}"


def findings_text(f: Findings, rng: np.random.Generator) -> str:
    s: list[str] = [DEVICE_SENTENCES[d] for d in f.devices]
    lung: list[str] = []
    if f.consolidation:
        lung.append(f"Focal consolidation in the {f.consolidation} {f.consolidation_lobe} lobe.")
    if f.pneumonia:
        lung.append(
            _pick(
                rng,
                f"Patchy opacities in the {f.pneumonia} lower lung, concerning for pneumonia.",
                f"Multifocal patchy opacities in the {f.pneumonia} lung compatible with pneumonia.",
            )
        )
    if f.edema:
        lung.append(
            "Perihilar haziness and vascular congestion consistent with "
            f"{'mild' if f.edema == 'mild' else 'severe'} pulmonary edema."
        )
    if f.atelectasis:
        lung.append(f"Linear opacity at the {f.atelectasis} base, likely atelectasis.")
    if f.lesion:
        lung.append(f"A 2 cm nodule in the {f.lesion} {f.lesion_zone} lung zone.")
    if not lung:
        lung.append(
            _pick(rng, "The lungs are clear.", "The lungs are clear without focal consolidation.")
        )
    s += lung
    if f.effusion:
        size = (f.effusion_size or "small").capitalize()
        what = (
            "bilateral pleural effusions"
            if f.effusion == "bilateral"
            else f"{f.effusion} pleural effusion"
        )
        s.append(f"{size} {what} with blunting of the costophrenic angle.")
    if f.pneumothorax:
        s.append(f"{(f.pneumothorax_size or 'small').capitalize()} {f.pneumothorax} pneumothorax.")
    if not f.effusion and not f.pneumothorax:
        s.append(
            _pick(
                rng,
                "No pleural effusion or pneumothorax.",
                "There is no pleural effusion or pneumothorax.",
            )
        )
    if f.elevated_diaphragm:
        s.append(f"The {f.elevated_diaphragm} hemidiaphragm is elevated.")
    heart = {
        "normal": "The heart size is normal.",
        "mild": "The heart is mildly enlarged.",
        "moderate": "The heart is moderately enlarged.",
        "severe": "The heart is severely enlarged.",
    }[f.heart_size]
    s.append(
        heart
        + " "
        + _pick(
            rng,
            "Mediastinal contours are unremarkable.",
            "The mediastinal and hilar contours are normal.",
        )
    )
    return " ".join(s)


def impression_text(f: Findings) -> str:
    parts: list[str] = []
    if f.cardiomegaly:
        parts.append(f"{f.heart_size.capitalize()} cardiomegaly.")
    if f.edema:
        parts.append(f"{f.edema.capitalize()} pulmonary edema.")
    if f.effusion:
        parts.append(f"{_side_word(f.effusion).capitalize()} pleural effusion.")
    if f.pneumothorax:
        parts.append(f"{f.pneumothorax.capitalize()} pneumothorax.")
    if f.consolidation:
        parts.append(f"{f.consolidation.capitalize()} {f.consolidation_lobe} lobe consolidation.")
    if f.pneumonia:
        parts.append(f"{f.pneumonia.capitalize()} lung pneumonia.")
    if f.atelectasis:
        parts.append(f"{f.atelectasis.capitalize()} basilar atelectasis.")
    if f.lesion:
        parts.append(f"{f.lesion.capitalize()} lung nodule; recommend CT for further evaluation.")
    if f.devices:
        parts.append("Support devices in standard position.")
    if f.elevated_diaphragm:
        parts.append(f"Elevated {f.elevated_diaphragm} hemidiaphragm.")
    if not parts or parts == ["Support devices in standard position."]:
        parts.insert(0, "No acute cardiopulmonary process.")
    return " ".join(parts)
