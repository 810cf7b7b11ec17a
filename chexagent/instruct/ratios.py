"""Table 7: the sampling ratio of every task-dataset pair in stage-3 training (0 = held out),
and the datasets the paper sequesters for evaluation (section 4.2: OpenI, SLAKE, SIIM).

A ratio r means: each epoch of the stage-3 mix draws r x (the pair's train instances) from it
(r > 1 repeats instances, r < 1 subsamples). Pairs missing from Table 7 are not trained on
unless the caller supplies a ratio for them (e.g. the phantom recipe), so a new processor can
never silently change the paper's mix.
"""

from __future__ import annotations

from chexagent.instruct.schema import pair_name

HELD_OUT_DATASETS: frozenset[str] = frozenset({"OpenI", "SLAKE", "SIIM"})

TABLE7: tuple[tuple[str, str, float], ...] = (
    ("NamedEntityRecognition", "RadGraph", 10.0),
    ("AbnormalityGrounding", "VinDr-CXR", 1.0),
    ("AbnormalityGrounding", "VinDr-PCXR", 1.0),
    ("CaptionGeneration", "ROCO", 1.0),
    ("Close-EndedVQA", "PMC-VQA", 1.0),
    ("Close-EndedVQA", "VQA-RAD", 1.0),
    ("ForeignObjectDetection", "Object-CXR", 1.0),
    ("GroundedCaptioning", "MS-CXR", 1.0),
    ("GroundedDiagnosis", "MS-CXR", 1.0),
    ("GroundedDiagnosis", "VinDr-CXR", 1.0),
    ("GroundedDiagnosis", "VinDr-PCXR", 1.0),
    ("GroundedPhraseExtraction", "MS-CXR", 1.0),
    ("ImageClassification", "COVIDX-CXR-3", 1.0),
    ("ImageClassification", "NLM-TB", 1.0),
    ("ImageClassification", "RSNA", 1.0),
    ("ImpressionGeneration", "Candid", 1.0),
    ("Open-EndedVQA", "MedVQA-2019", 1.0),
    ("Open-EndedVQA", "PMC-VQA", 1.0),
    ("Open-EndedVQA", "VQA-RAD", 1.0),
    ("PhraseGrounding", "MS-CXR", 1.0),
    ("PneumothoraxSegmentation", "Candid", 1.0),
    ("ProgressionFindingsGeneration", "MIMIC-CXR", 1.0),
    ("ProgressionImpressionGeneration", "MIMIC-CXR", 1.0),
    ("TextQA", "RadQA", 1.0),
    ("ViewMatching", "MIMIC-CXR", 0.5),
    ("FindingsGeneration", "MIMIC-CXR-Struct", 0.4),
    ("ImpressionGeneration", "MIMIC-CXR-Struct", 0.3),
    ("NaturalLanguageExplanation", "MIMIC-NLE", 0.3),
    ("ReportGeneration", "BIMCV-COVID19", 0.25),
    ("FindingsSummarization", "MIMIC-III", 0.2),
    ("ImageClassification", "ChestXray14", 0.2),
    ("Close-EndedVQA", "MIMIC-CXR-VQA", 0.1),
    ("FindingsGeneration", "MIMIC-CXR", 0.1),
    ("FindingsSummarization", "MIMIC-CXR", 0.1),
    ("ImageClassification", "Brax", 0.1),
    ("ImageClassification", "CheXpert", 0.1),
    ("ImageClassification", "PadChest", 0.1),
    ("Image-TextMatching", "ROCO", 0.1),
    ("Image-TextSelection", "ROCO", 0.1),
    ("ImpressionGeneration", "MIMIC-CXR", 0.1),
    ("ReportGeneration", "PadChest", 0.1),
    ("ViewClassification", "MIMIC-CXR", 0.1),
    ("ImageClassification", "MIMIC-CXR", 0.05),
    ("Open-EndedVQA", "MIMIC-CXR-VQA", 0.05),
    ("LocalFindingsGeneration", "MIMIC-CXR-Struct", 0.02),
    ("LocalImpressionGeneration", "MIMIC-CXR-Struct", 0.02),
    ("TextInstructions", "OpenOrca", 0.02),
    ("DifferenceVQA", "MIMIC-Diff-VQA", 0.01),
    ("ImageClassification", "CXR-LT", 0.01),
    ("Image-TextMatching", "MIMIC-CXR", 0.01),
    ("Image-TextSelection", "MIMIC-CXR", 0.01),
    ("AbnormalityDetection", "VinDr-CXR", 0.0),
    ("AbnormalityDetection", "VinDr-PCXR", 0.0),
    ("ChestTubeSegmentation", "Candid", 0.0),
    ("Close-EndedVQA", "Rad-Restruct", 0.0),
    ("Close-EndedVQA", "SLAKE", 0.0),
    ("Open-EndedVQA", "Rad-Restruct", 0.0),
    ("Open-EndedVQA", "SLAKE", 0.0),
    ("PhraseExtractionandGrounding", "MS-CXR", 0.0),
    ("PneumothoraxSegmentation", "SIIM", 0.0),
    ("RibFractureSegmentation", "Candid", 0.0),
)

TABLE7_RATIOS: dict[str, float] = {pair_name(t, d): r for t, d, r in TABLE7}


def ratio_for(pair: str, dataset: str, overrides: dict[str, float] | None = None) -> float:
    """The stage-3 sampling ratio; held-out datasets are 0 whatever the overrides say."""
    if dataset in HELD_OUT_DATASETS:
        return 0.0
    if overrides and pair in overrides:
        return overrides[pair]
    return TABLE7_RATIOS.get(pair, 0.0)
