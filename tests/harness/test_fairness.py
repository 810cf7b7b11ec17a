"""The balanced bootstrap, demographics reading/joining, warnings, determinism, generic use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import UserError
from harness.fairness.analysis import analyse
from harness.fairness.demographics import (
    bin_ages,
    join_keys,
    load_demographics,
    normalise_race,
    normalise_sex,
)
from harness.fairness.resample import balanced_indices, per_stratum_size
from harness.io import atomic_write_json, atomic_write_jsonl
from harness.results_schema import (
    MetricValue,
    ModelInfo,
    Results,
    RunCard,
    SubtaskResult,
    validate_results,
)


def test_balanced_resampler_gives_equal_prevalence_and_subgroup_counts_every_sample():
    rng = np.random.default_rng(0)
    group = rng.choice(["a", "b", "c"], size=300, p=[0.7, 0.2, 0.1])
    label = rng.random(300) < np.where(group == "a", 0.2, 0.6)  # prevalence differs by group
    strata = [np.flatnonzero((group == g) & (label == y)) for g in "abc" for y in (True, False)]
    size = per_stratum_size([len(s) for s in strata], "min")
    idx = balanced_indices(strata, size, B=2000, rng=np.random.default_rng(1))
    assert idx.shape == (2000, 6, size)
    flat = idx.reshape(2000, -1)
    for g in "abc":
        in_group = (group[flat] == g).sum(axis=1)
        positives = ((group[flat] == g) & label[flat]).sum(axis=1)
        assert np.all(in_group == 2 * size)  # equal representation, in every sample
        assert np.all(positives == size)  # prevalence exactly 50%, in every sample
    # Resampling is with replacement from the right stratum only.
    for s, members in enumerate(strata):
        assert np.isin(idx[:, s, :], members).all()
    assert len(np.unique(idx[:, 0, :])) == len(strata[0])


def test_per_stratum_rules():
    assert per_stratum_size([5, 9, 40], "min") == 5
    assert per_stratum_size([5, 9, 40], "max") == 40
    assert per_stratum_size([5, 9, 40], "median") == 9
    assert per_stratum_size([5, 9, 40], "25") == 25
    with pytest.raises(ValueError):
        per_stratum_size([5, 0], "min")
    with pytest.raises(ValueError):
        per_stratum_size([5, 6], "mean")


def test_demographic_values_are_normalised_and_unknowns_never_guessed():
    assert [normalise_sex(v) for v in ("F", "Male", "", "Unknown", "x")] == [
        "female",
        "male",
        None,
        None,
        "other",
    ]
    assert [
        normalise_race(v)
        for v in (
            "White, non-Hispanic",
            "Black or African American",
            "Asian",
            "Asian, Hispanic",
            "Native Hawaiian or Other Pacific Islander",
            "Patient Refused",
            "",
        )
    ] == ["White", "Black", "Asian", "Asian", "Other", None, None]
    assert bin_ages([0, 64.9, 65, 90, None, -3], (0, 65)) == [
        "0-65",
        "0-65",
        "65+",
        "65+",
        None,
        None,
    ]


def test_chexpert_style_columns_and_study_level_join(tmp_path):
    csv = tmp_path / "demo.csv"
    csv.write_text(
        "PATIENT,GENDER,PRIMARY_RACE,AGE_AT_CXR\n"
        'patient64741,Female,"White, non-Hispanic",70\n'
        "patient64742,Male,Unknown,90+\n"
    )
    demo = load_demographics(csv, ["sex", "race", "age"])
    assert demo.id_column == "PATIENT"
    assert demo.table.loc["patient64741"].tolist() == ["female", "White", "65+"]
    sex, race, age = demo.table.loc["patient64742"].tolist()
    assert (sex, age) == ("male", "65+") and pd.isna(race)
    keys = join_keys(["test/patient64741/study1/view1_frontal.jpg"], "patient64741")
    assert keys.index("patient64741/study1") < keys.index("patient64741")


def test_conflicting_demographics_are_an_error_naming_the_id(tmp_path):
    csv = tmp_path / "demo.csv"
    csv.write_text("patient_id,sex,race,age\np1,female,White,40\np1,male,White,40\n")
    with pytest.raises(UserError, match="p1"):
        load_demographics(csv, ["sex", "race", "age"])


def _table(n_per_group: dict[str, int], accuracy: dict[str, float], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g, n in n_per_group.items():
        for i in range(n):
            y = i % 2 == 0
            right = rng.random() < accuracy[g]
            rows.append({"subject": f"{g}{i}", "y": y, "pred": y if right else not y, "grp": g})
    return pd.DataFrame(rows)


def test_analysis_is_deterministic_and_warns_about_small_subgroups():
    table = _table({"big": 200, "small": 20}, {"big": 0.9, "small": 0.9}, seed=3)
    a = analyse(table, ["grp"], B=500, seed=11)
    b = analyse(table, ["grp"], B=500, seed=11)
    c = analyse(table, ["grp"], B=500, seed=12)
    assert np.array_equal(a.attributes["grp"].replicates, b.attributes["grp"].replicates)
    assert a.attributes["grp"].gap == b.attributes["grp"].gap
    assert a.attributes["grp"].gap != c.attributes["grp"].gap
    assert any("small: only 20 unique subjects" in w for w in a.warnings)
    assert not any("big:" in w for w in a.warnings)
    assert a.attributes["grp"].per_stratum == 10  # the smallest stratum: 10 positives


def test_group_without_both_classes_is_reported_not_scored():
    table = _table({"a": 60, "b": 60}, {"a": 0.9, "b": 0.9}, seed=4)
    table = pd.concat(
        [table, pd.DataFrame([{"subject": "z1", "y": True, "pred": True, "grp": "c"}])],
        ignore_index=True,
    )
    result = analyse(table, ["grp"], B=200, seed=1)
    assert set(result.attributes["grp"].groups) == {"a", "b"}
    assert result.attributes["grp"].not_analysed == {"c": 1}
    assert any("grp=c" in w for w in result.warnings)


def _siim_run(tmp_path, private: str = "private") -> tuple[str, str]:
    """Saved pneumothorax rows (SIIM) whose accuracy depends on insurance, and their
    demographics CSV (insurance, bmi with blanks); returns both paths."""
    rng = np.random.default_rng(5)
    rows, demo = [], ["patient_id,insurance,bmi"]
    for i in range(160):
        sick = i % 2 == 0
        ins = ["public", private][i % 4 // 2]
        right = rng.random() < (0.95 if ins == private else 0.6)
        says_present = sick if right else not sick
        rows.append(
            {
                "task": "chexbench_binary_disease_classification_siim",
                "item_id": f"b/{i}",
                "cluster_id": f"pat{i}",
                "question": "Is there a pneumothorax?",
                "options": ["Absent", "Present"],
                "answer": 1 if sick else 0,
                "prediction": 1 if says_present else 0,
                "image_paths": [f"siim/pat{i}/img.png"],
                "correct": right,
            }
        )
        demo.append(f"pat{i},{ins},{'' if i % 10 == 0 else 18 + i % 20}")
    samples = tmp_path / "siim.samples.jsonl"
    atomic_write_jsonl(samples, rows)
    (tmp_path / "demo.csv").write_text("\n".join(demo) + "\n")
    return str(samples), str(tmp_path / "demo.csv")


def test_generic_binary_task_with_custom_columns_via_cli(tmp_path, capsys):
    """Any binary task and any demographic column: pneumothorax on SIIM by insurance."""
    samples, demo = _siim_run(tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "fairness",
            samples,
            "--demographics",
            demo,
            "--question",
            "pneumothorax",
            "--positive",
            "Present",
            "--attribute",
            "insurance",
            "--attribute",
            "bmi",
            "--bins",
            "bmi=0,25",
            "-B",
            "500",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    obj = json.loads((out / "fairness.json").read_text())
    assert validate_results(obj) == []
    block = obj["fairness"]
    assert block["protocol"] == "custom" and block["positive"] == "Present"
    ins = block["attributes"]["insurance"]
    assert ins["gap"]["config"] == {**ins["gap"]["config"], "best": "private", "worst": "public"}
    assert ins["gap"]["ci"][0] > 0
    assert set(block["attributes"]["bmi"]["groups"]) == {"0-25", "25+"}
    assert block["attributes"]["bmi"]["unknown"] == 16  # blank BMI: counted, not imputed
    assert "16 item(s) with missing/unknown value" in capsys.readouterr().out


def _results_file(samples: str, model_name: str) -> str:
    """A results JSON for saved rows, naming its model `model_name`."""
    rows = [json.loads(line) for line in open(samples, encoding="utf-8")]
    task = rows[0]["task"]
    acc = float(np.mean([r["correct"] for r in rows]))
    results = Results(
        run_id="run-x",
        source="demo",
        model=ModelInfo(name=model_name),
        run_card=RunCard(
            harness_version="0.1.0",
            harness_commit=None,
            packages={},
            created_at="2025-01-01T00:00:00+00:00",
            seed=0,
        ),
        subtasks={
            task: SubtaskResult(
                name=task,
                task="binary_disease_classification",
                dataset="siim",
                kind="perception",
                n=len(rows),
                headline="acc_chexbench",
                metrics={"acc_chexbench": MetricValue(value=acc, n=len(rows))},
            )
        },
        samples_file=Path(samples).name,
    )
    path = Path(samples).with_name("run.json")
    atomic_write_json(path, results.model_dump(mode="json"))
    return str(path)


def test_hostile_names_from_files_are_printed_escaped_not_obeyed(tmp_path, capsys):
    """Model name (results file) and group names (CSV) are file text: Rich markup in them must
    not crash the table and an ANSI escape must be shown, not sent to the terminal."""
    samples, demo = _siim_run(tmp_path, private="priv[/i]ate\x1b[2J")
    run = _results_file(samples, "m[/b]\x1b[31m")
    argv = ["fairness", run, "--demographics", demo, "--question", "pneumothorax"]
    argv += ["--positive", "Present", "--attribute", "insurance", "-B", "100"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "m[/b]\\x1b[31m" in printed and "priv[/i]ate\\x1b[2J" in printed
    assert "\x1b" not in printed


def test_bad_fairness_input_is_a_clear_error(tmp_path, capsys):
    samples = tmp_path / "x.samples.jsonl"
    atomic_write_jsonl(
        samples,
        [
            {
                "task": "t",
                "item_id": "1",
                "question": "Does this chest X-ray contain cardiomegaly?",
                "options": ["Yes", "No", "Maybe"],
                "answer": 0,
                "prediction": 0,
                "image_paths": ["a/p1/x.png"],
                "cluster_id": "p1",
            }
        ],
    )
    (tmp_path / "d.csv").write_text("patient_id,sex,race,age\np1,female,White,40\n")
    assert (
        main(
            [
                "fairness",
                str(samples),
                "--demographics",
                str(tmp_path / "d.csv"),
                "-o",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "line 1" in err and "exactly 2 options" in err
    assert not (tmp_path / "o").exists()
    assert main(["fairness", str(samples), "--demographics", str(tmp_path / "nope.csv")]) == 2
    assert "demographics CSV not found" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["abc", "0", "-2", "1.5"])
def test_bad_per_stratum_rule_fails_up_front_in_one_line(rule, tmp_path, capsys):
    """Checked when the line is parsed, not after the run and demographics are read (it used
    to end in a ValueError traceback from the resampler)."""
    samples, demo = _siim_run(tmp_path)
    argv = ["fairness", samples, "--demographics", demo, "--question", "pneumothorax"]
    argv += ["--positive", "Present", "--attribute", "insurance", "--per-stratum", rule]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--per-stratum" in err and repr(rule) in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_results_id_covers_every_setting_and_the_inputs_content(tmp_path):
    """Analyses that differ only in --positive (or --task, --all-views) used to share an id,
    and so overwrote each other; the same files elsewhere are the same analysis."""
    samples, demo = _siim_run(tmp_path)
    argv = ["fairness", samples, "--demographics", demo, "--question", "pneumothorax"]
    argv += ["--attribute", "insurance", "-B", "100"]

    def run_id(*extra: str, out: str) -> str:
        assert main([*argv, *extra, "-o", str(tmp_path / out)]) == 0
        return json.loads((tmp_path / out / "fairness.json").read_text())["run_id"]

    present = run_id("--positive", "Present", out="present")
    absent = run_id("--positive", "Absent", out="absent")
    views = run_id("--positive", "Present", "--all-views", out="views")
    assert len({present, absent, views}) == 3
    assert run_id("--positive", "Present", out="again") == present
    copy = tmp_path / "copy"
    copy.mkdir()
    argv[1] = str(copy / "siim.samples.jsonl")
    Path(argv[1]).write_bytes(Path(samples).read_bytes())
    assert run_id("--positive", "Present", out="moved") == present
