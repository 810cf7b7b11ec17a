"""The section 7 fairness set rebuilt from CheXpert label files and the CheXpert demographics.

The fixtures are written here in the real column layouts: CheXpert's valid.csv layout (Path,
Sex, Age, Frontal/Lateral, AP/PA, 14 observations coded 1.0/0.0/-1.0/blank), CheXlocalize's
test_labels.csv (Path + 14 observations, 0/1), groundtruth.csv of the CheXpert test-set labels
(Study + 14 observations), and CHEXPERT DEMO (PATIENT, GENDER, AGE_AT_CXR, PRIMARY_RACE,
ETHNICITY). The expected selections are worked out by hand from the rules in the module
docstring, not by running the builder.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.data import load_data
from harness.errors import UserError
from harness.fairness.chexpert_set import build_fairness_set, study_answer
from harness.io import atomic_write_jsonl
from harness.results_schema import validate_results

OBSERVATIONS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
]  # fmt: skip
VALID_LAYOUT = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]
DEMO_LAYOUT = ["PATIENT", "GENDER", "AGE_AT_CXR", "PRIMARY_RACE", "ETHNICITY"]
QUESTION = "Does this chest X-ray contain cardiomegaly?"
PREFIX = "data/chexpert-public/test"

# (path under CheXpert-v1.0/test/, labels); the comment says what the row exercises.
IMAGES = [
    ("patient64741/study1/view1_frontal.jpg", {"Cardiomegaly": "1.0", "Support Devices": "1.0"}),
    ("patient64741/study1/view2_lateral.jpg", {"Cardiomegaly": "1.0", "Support Devices": "1.0"}),
    ("patient64742/study1/view1_frontal.jpg", {"No Finding": "1.0"}),  # blank Cardiomegaly
    ("patient64743/study1/view1_frontal.jpg", {"Cardiomegaly": "-1.0", "Edema": "1.0"}),
    ("patient64743/study10/view1_frontal.jpg", {"No Finding": "1.0"}),  # after study2
    ("patient64743/study2/view1_frontal.jpg", {"Cardiomegaly": "1.0"}),
    ("patient64743/study2/view2_lateral.jpg", {"Cardiomegaly": "1.0"}),
    ("patient64744/study1/view1_frontal.jpg", {"Cardiomegaly": "1.0"}),  # race Other
    ("patient64745/study1/view1_frontal.jpg", {"No Finding": "1.0"}),  # no demographics
    ("patient64746/study1/view1_frontal.jpg", {"Cardiomegaly": "0.0", "Pleural Effusion": "1.0"}),
    ("patient64747/study1/view1_lateral.jpg", {"Cardiomegaly": "1.0"}),  # lateral-only study
    ("patient64747/study2/view1_frontal.jpg", {"No Finding": "1.0"}),
    ("patient64748/study1/view1_frontal.jpg", {"Cardiomegaly": "1.0"}),  # race Unknown
    ("patient64749/study1/view1_frontal.jpg", {"No Finding": "1.0", "Cardiomegaly": "1.0"}),
    ("patient64750/study1/view2_frontal.jpg", {"Cardiomegaly": "1.0"}),  # two frontal films
    ("patient64750/study1/view1_frontal.jpg", {"Cardiomegaly": "1.0"}),
    ("patient64751/study1/view1_frontal.jpg", {"No Finding": "1.0", "Cardiomegaly": "0.0"}),
]
DEMOGRAPHICS = [
    ("patient64741", "Female", "64", "White, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient64742", "Male", "65", "Black or African American", "Non-Hispanic/Non-Latino"),
    ("patient64743", "Male", "70", "Asian, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient64744", "Female", "50", "Other", "Hispanic/Latino"),
    ("patient64746", "Male", "80", "White", "Non-Hispanic/Non-Latino"),
    ("patient64747", "Female", "", "Asian", "Non-Hispanic/Non-Latino"),
    ("patient64748", "Male", "40", "Unknown", "Unknown"),
    ("patient64749", "Male", "72", "White, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient64750", "Female", "30", "Black or African American", "Non-Hispanic/Non-Latino"),
    ("patient64751", "Female", "45", "White, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient00001", "Female", "68", "Other", "Non-Hispanic/Non-Latino"),  # a train patient
]
# (patient, study/file, answer index: 0 = Yes, 1 = No)
EXPECTED = [
    ("patient64741", "study1/view1_frontal.jpg", 0),
    ("patient64742", "study1/view1_frontal.jpg", 1),
    ("patient64743", "study2/view1_frontal.jpg", 0),
    ("patient64747", "study2/view1_frontal.jpg", 1),
    ("patient64750", "study1/view1_frontal.jpg", 0),
    ("patient64751", "study1/view1_frontal.jpg", 1),
]
EXPECTED_EXCLUDED = {
    "lateral images": 3,
    "studies without a frontal image": 1,
    "extra frontal images of a study (lowest view kept)": 1,
    "studies with uncertain Cardiomegaly (-1)": 1,
    "studies labelled neither No Finding nor Cardiomegaly": 1,
    "studies marked both No Finding and Cardiomegaly": 1,
    "later studies of a subject already in the set": 1,
    "subjects without a demographics record": 1,
    "subjects with race Other (not Asian/Black/White)": 1,
    "subjects with race unknown (not Asian/Black/White)": 1,
}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _valid_layout_row(rel: str, labels: dict[str, str]) -> list[str]:
    lateral = "lateral" in rel
    return [f"CheXpert-v1.0/test/{rel}", "Female", "60", "Lateral" if lateral else "Frontal",
            "" if lateral else "AP", *(labels.get(o, "") for o in OBSERVATIONS)]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    labels = _write_csv(
        tmp_path / "valid_layout.csv",
        VALID_LAYOUT,
        [_valid_layout_row(rel, labels) for rel, labels in IMAGES],
    )
    demo = _write_csv(tmp_path / "CHEXPERT DEMO.csv", DEMO_LAYOUT, [list(r) for r in DEMOGRAPHICS])
    return labels, demo


def test_selection_follows_the_paper_one_frontal_study_per_subject(files, tmp_path):
    fs = build_fairness_set(*files)
    assert [item["image_path"] for item in fs.items] == [
        f"{PREFIX}/{patient}/{rel}" for patient, rel, _ in EXPECTED
    ]
    for item, (_, _, answer) in zip(fs.items, EXPECTED, strict=True):
        assert item == {
            "data_source": "CheXpert", "image_path": item["image_path"], "question": QUESTION,
            "option_0": "Yes", "option_1": "No", "option_2": None, "option_3": None,
            "answer": answer,
        }  # fmt: skip
    assert dict(fs.excluded) == EXPECTED_EXCLUDED
    assert list(fs.data) == ["Binary Disease Classification"]
    # 64 is under 65, 65 is in 65+ (half-open bins); a missing age stays unknown.
    assert fs.demographics == [
        {"patient_id": "patient64741", "sex": "female", "race": "White", "age": 64.0,
         "age_group": "0-65"},
        {"patient_id": "patient64742", "sex": "male", "race": "Black", "age": 65.0,
         "age_group": "65+"},
        {"patient_id": "patient64743", "sex": "male", "race": "Asian", "age": 70.0,
         "age_group": "65+"},
        {"patient_id": "patient64747", "sex": "female", "race": "Asian", "age": None,
         "age_group": None},
        {"patient_id": "patient64750", "sex": "female", "race": "Black", "age": 30.0,
         "age_group": "0-65"},
        {"patient_id": "patient64751", "sex": "female", "race": "White", "age": 45.0,
         "age_group": "0-65"},
    ]  # fmt: skip


def test_other_negative_rule_takes_any_certain_no_cardiomegaly(files):
    fs = build_fairness_set(*files, negatives="no-cardiomegaly")
    paths = [item["image_path"] for item in fs.items]
    assert f"{PREFIX}/patient64746/study1/view1_frontal.jpg" in paths  # Cardiomegaly 0, effusion
    assert len(paths) == len(EXPECTED) + 1
    assert "studies labelled neither No Finding nor Cardiomegaly" not in fs.excluded


def test_study_answer_rules():
    assert study_answer(1.0, None) == ("Yes", None)
    assert study_answer(None, 1.0) == ("No", None)
    assert study_answer(0.0, 1.0) == ("No", None)
    assert study_answer(0.0, None)[0] is None  # no No Finding: not one of the paper's negatives
    assert study_answer(0.0, None, "no-cardiomegaly") == ("No", None)
    assert study_answer(-1.0, None)[1] == "studies with uncertain Cardiomegaly (-1)"
    assert study_answer(-1.0, 1.0, "no-cardiomegaly")[0] is None
    assert study_answer(0.0, -1.0)[1] == "studies with uncertain No Finding (-1)"
    assert study_answer(1.0, 1.0)[0] is None


def test_cli_output_runs_through_chexbench_fairness_end_to_end(files, tmp_path, capsys):
    labels, demo = files
    out = tmp_path / "set" / "fairness.json"
    assert main(["fairness-set", "--labels", str(labels), "--demographics", str(demo),
                 "--output", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "6 subjects (3 Yes / 3 No)" in printed and "left out: 3 lateral images" in printed
    demographics_csv = tmp_path / "set" / "fairness-demographics.csv"
    assert demographics_csv.read_text().splitlines() == [
        "patient_id,sex,race,age,age_group",
        "patient64741,female,White,64,0-65",
        "patient64742,male,Black,65,65+",
        "patient64743,male,Asian,70,65+",
        "patient64747,female,Asian,,",
        "patient64750,female,Black,30,0-65",
        "patient64751,female,White,45,0-65",
    ]
    # The file loads as CheXbench data, and every item's cluster is its patient.
    data = load_data(out)
    assert [(i.task, i.dataset, i.cluster_id) for i in data.perception] == [
        ("binary_disease_classification", "chexpert", p) for p, _, _ in EXPECTED
    ]
    # Scored rows as `chexbench run` writes them: "Yes" everywhere except patient64743.
    rows = []
    for item in data.perception:
        says = "No" if item.cluster_id == "patient64743" else "Yes"
        prediction = item.options.index(says)
        rows.append({"task": "chexbench_binary_disease_classification_chexpert",
                     "item_id": item.item_id, "doc_id": item.index, "dataset": item.dataset,
                     "cluster_id": item.cluster_id, "question": item.question,
                     "options": item.options, "answer": item.answer,
                     "image_paths": item.image_paths, "prediction": prediction,
                     "correct": prediction == item.answer})  # fmt: skip
    samples = tmp_path / "run.samples.jsonl"
    atomic_write_jsonl(samples, rows)
    report = tmp_path / "report"
    assert main(["fairness", str(samples), "--demographics", str(demographics_csv), "-B", "200",
                 "-o", str(report)]) == 0  # fmt: skip
    obj = json.loads((report / "fairness.json").read_text())
    assert validate_results(obj) == []
    block = obj["fairness"]
    assert (block["n_items"], block["n_subjects"], block["excluded"]) == (6, 6, {})
    attrs = block["attributes"]
    # Observed F1 by hand: White tp 64741, fp 64751 -> 2/3; Asian tp 0 -> 0;
    # female tp 2 fp 2 -> 2/3; male fp 1 fn 1 -> 0; 0-65 tp 2 fp 1 -> 0.8; 65+ -> 0.
    observed = {(a, g): round(s["f1_observed"], 6) for a in attrs
                for g, s in attrs[a]["groups"].items()}  # fmt: skip
    assert observed == {
        ("race", "White"): round(2 / 3, 6), ("race", "Black"): round(2 / 3, 6),
        ("race", "Asian"): 0.0, ("sex", "female"): round(2 / 3, 6), ("sex", "male"): 0.0,
        ("age", "0-65"): 0.8, ("age", "65+"): 0.0,
    }  # fmt: skip
    assert {g: (s["n_positive"], s["n_negative"]) for g, s in attrs["age"]["groups"].items()} == {
        "0-65": (2, 1),
        "65+": (1, 1),
    }
    assert attrs["age"]["unknown"] == 1  # patient64747, no AGE_AT_CXR


def test_chexlocalize_and_per_study_label_files_give_the_same_set(tmp_path):
    """test_labels.csv (Path per image, no view column) vs groundtruth.csv + the image folder."""
    studies = {  # patient -> (No Finding, Cardiomegaly, image files)
        "patient64800": ("0", "1", ["view1_frontal.jpg", "view2_lateral.jpg"]),
        "patient64801": ("1", "0", ["view1_frontal.jpg"]),
        "patient64802": ("0", "0", ["view1_frontal.jpg"]),  # neither label: left out
        "patient64803": ("1", "0", ["view1_lateral.jpg"]),  # no frontal film: left out
    }

    def observations(nf: str, cm: str) -> list[str]:
        return [{"No Finding": nf, "Cardiomegaly": cm}.get(o, "0") for o in OBSERVATIONS]

    per_image = _write_csv(
        tmp_path / "test_labels.csv",
        ["Path", *OBSERVATIONS],
        [[f"test/{p}/study1/{f}", *observations(nf, cm)]
         for p, (nf, cm, fs) in studies.items() for f in fs],
    )  # fmt: skip
    per_study = _write_csv(
        tmp_path / "groundtruth.csv",
        ["Study", *OBSERVATIONS],
        [[f"CheXpert-v1.0/test/{p}/study1", *observations(nf, cm)]
         for p, (nf, cm, _) in studies.items()],
    )  # fmt: skip
    image_dir = tmp_path / "CheXpert" / "test"
    for p, (_, _, fs) in studies.items():
        (image_dir / p / "study1").mkdir(parents=True)
        for f in fs:
            (image_dir / p / "study1" / f).write_bytes(b"")
    demo = _write_csv(
        tmp_path / "demo.csv",
        DEMO_LAYOUT,
        [[p, "Male", "66", "Asian", "Unknown"] for p in studies],
    )
    a = build_fairness_set(per_image, demo)
    b = build_fairness_set(per_study, demo, image_dir=image_dir)
    expected = [(f"{PREFIX}/patient64800/study1/view1_frontal.jpg", 0),
                (f"{PREFIX}/patient64801/study1/view1_frontal.jpg", 1)]  # fmt: skip
    assert [(i["image_path"], i["answer"]) for i in a.items] == expected
    assert a.items == b.items
    assert (
        a.excluded
        == b.excluded
        == {
            "lateral images": 2,
            "studies without a frontal image": 1,
            "studies labelled neither No Finding nor Cardiomegaly": 1,
        }
    )
    with pytest.raises(UserError, match="pass --image-dir"):
        build_fairness_set(per_study, demo)
    for f in (image_dir / "patient64801" / "study1").iterdir():
        f.unlink()  # a study whose images are not on disk is counted, not guessed
    c = build_fairness_set(per_study, demo, image_dir=image_dir)
    assert [i["image_path"] for i in c.items] == [expected[0][0]]
    assert c.excluded["studies with no image files under --image-dir"] == 1


def _error(capsys, *argv: str) -> str:
    assert main(["fairness-set", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_inputs_are_one_line_errors_and_write_nothing(files, tmp_path, capsys):
    labels, demo = files
    out = tmp_path / "o" / "set.json"
    base = ["--demographics", str(demo), "--output", str(out)]

    rows = [_valid_layout_row(rel, lab) for rel, lab in IMAGES]
    rows[1][VALID_LAYOUT.index("Cardiomegaly")] = "2"
    bad = _write_csv(tmp_path / "bad.csv", VALID_LAYOUT, rows)
    err = _error(capsys, "--labels", str(bad), *base)
    assert f"{bad}: row 3: Cardiomegaly is '2'" in err

    rows = [_valid_layout_row(rel, lab) for rel, lab in IMAGES]
    rows[1][VALID_LAYOUT.index("Cardiomegaly")] = "0.0"  # the lateral film of patient64741
    bad = _write_csv(tmp_path / "disagree.csv", VALID_LAYOUT, rows)
    assert "row 3: patient64741/study1 has labels that disagree with row 2" in _error(
        capsys, "--labels", str(bad), *base
    )

    rows = [_valid_layout_row(rel, lab) for rel, lab in IMAGES]
    rows[0][VALID_LAYOUT.index("Frontal/Lateral")] = "Lateral"
    bad = _write_csv(tmp_path / "view.csv", VALID_LAYOUT, rows)
    assert "row 2: Frontal/Lateral says 'Lateral'" in _error(capsys, "--labels", str(bad), *base)

    no_race = _write_csv(tmp_path / "d.csv", ["PATIENT", "GENDER"], [["patient64741", "Male"]])
    err = _error(
        capsys, "--labels", str(labels), "--demographics", str(no_race), "--output", str(out)
    )
    assert "needs PATIENT and PRIMARY_RACE" in err

    clash = _write_csv(
        tmp_path / "clash.csv",
        DEMO_LAYOUT,
        [list(r) for r in DEMOGRAPHICS] + [["patient64742", "Male", "65", "Asian", "Unknown"]],
    )
    err = _error(
        capsys, "--labels", str(labels), "--demographics", str(clash), "--output", str(out)
    )
    assert f"row {len(DEMOGRAPHICS) + 2}: PATIENT 'patient64742' disagrees with row 3" in err

    assert "refusing to overwrite" in _error(
        capsys, "--labels", str(labels), "--demographics", str(demo), "--output", str(labels)
    )
    assert not (tmp_path / "o").exists()


def test_demographics_xlsx(files, tmp_path, capsys):
    labels, demo = files
    xlsx = tmp_path / "CHEXPERT DEMO.xlsx"
    if importlib.util.find_spec("openpyxl") is None:
        xlsx.write_bytes(b"PK\x03\x04 not read without openpyxl")
        err = _error(capsys, "--labels", str(labels), "--demographics", str(xlsx),
                     "--output", str(tmp_path / "x.json"))  # fmt: skip
        assert "needs the openpyxl package" in err and "export the sheet to CSV" in err
    else:
        pd.read_csv(demo, dtype=str, keep_default_na=False).to_excel(xlsx, index=False)
        assert build_fairness_set(labels, xlsx).items == build_fairness_set(labels, demo).items
