"""Leaderboard logic without a browser: loading, rejection reasons, pivots, comparisons,
submissions and exports."""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from helpers.leaderboard import (
    REPO,
    VIEW_MIMIC,
    build_folder,
    bundle,
    perception_results,
    valid_bundle_members,
    write_results,
)

from harness.cli import main as cli
from harness.results_schema import MetricValue, ModelInfo, Results, SubtaskResult
from leaderboard import submission, tables
from leaderboard.compare import FROM_BLOCK, FROM_SAMPLES, POINT_ONLY, compare
from leaderboard.export import figure_png, overview_csv
from leaderboard.loader import ACCEPTED, DEMO, PAPER, PENDING, REPRODUCED, load_folder

CHEXAGENT_RUN = "CheXagent · reproduced · partial"  # 20 items of Table 9's 400
BLIP_RUN = "BLIP-2 · reproduced · partial"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_folder(tmp_path_factory.mktemp("lb") / "results")


@pytest.fixture(scope="module")
def loaded(folder):
    return load_folder(folder)


def _entry(loaded, label):
    return next(e for e in loaded.entries if e.label == label)


# ---------------------------------------------------------------- loading and rejection


def test_invalid_files_are_rejected_with_reasons(loaded):
    reasons = {r.path.name: r.reason for r in loaded.rejected}
    assert set(reasons) == {"bad_schema.json", "broken.json"}
    assert "not valid JSON" in reasons["broken.json"]
    assert (
        "schema:" in reasons["bad_schema.json"]
        and "'model' is a required property" in (reasons["bad_schema.json"])
    )


def test_provenance_comes_from_source_and_location(loaded, folder, tmp_path):
    prov = {e.results.run_id: e.provenance for e in loaded.entries}
    assert prov["paper-chexagent"] == PAPER
    assert prov["run-chexagent"] == REPRODUCED
    assert prov["demo-run"] == DEMO
    # A file under submissions/ is a submission whatever its `source` claims.
    copy = tmp_path / "results"
    (copy / "submissions" / "x").mkdir(parents=True)
    shutil.copy(folder / "paper" / "chexagent.json", copy / "submissions" / "x" / "c.json")
    again = load_folder(copy)
    assert [e.provenance for e in again.entries] == [PENDING]


def test_oversized_results_file_is_rejected(tmp_path, monkeypatch):
    import harness.results_schema as schema

    write_results(tmp_path / "r.json", perception_results("r", "M", {VIEW_MIMIC: (0.5, 0.4, 0.6)}))
    monkeypatch.setattr(schema, "MAX_RESULTS_BYTES", 100)
    [rejected] = load_folder(tmp_path).rejected
    assert "byte limit" in rejected.reason


def test_missing_folder_is_a_rejection_not_a_crash(tmp_path):
    loaded = load_folder(tmp_path / "nope")
    assert not loaded.entries and "does not exist" in loaded.rejected[0].reason


# ---------------------------------------------------------------- pivots


def test_overview_pivot_against_hand_computed_values():
    m = lambda v: MetricValue(value=v)  # noqa: E731
    subs = {
        "a": ("view_classification", "mimic_cxr", 0.50, 0.80),
        "b": ("view_classification", "chexpert", 0.70, None),
        "c": ("image_text_reasoning", "openi", 0.30, 0.20),
    }

    def results(model, col):
        return Results(
            run_id=model,
            source="reproduced",
            model=ModelInfo(name=model),
            subtasks={
                k: SubtaskResult(
                    name=k,
                    task=t,
                    dataset=d,
                    kind="perception",
                    n=10,
                    metrics={"acc_chexbench": m(v[col])},
                )
                for k, (t, d, *v) in subs.items()
                if v[col] is not None
            },
        )

    from leaderboard.loader import Entry

    entries = [
        Entry(results("X", 0), Path("x.json"), REPRODUCED, "X"),
        Entry(results("Y", 1), Path("y.json"), REPRODUCED, "Y"),
    ]
    wide = tables.overview(tables.long_frame(entries, "perception", "acc_chexbench"))
    assert list(wide.index.get_level_values("Dataset")) == [
        "MIMIC-CXR",
        "CheXpert",
        "OpenI",
        "2 tasks",
        "3 pairs",
    ]
    assert wide.loc[("View Classification", "MIMIC-CXR"), "Y"] == pytest.approx(80.0)
    # X: tasks (50+70)/2=60 and 30 -> mean 45; pairs (50+70+30)/3 = 50.
    assert wide.loc[(tables.MEAN_TASKS, "2 tasks"), "X"] == pytest.approx(45.0)
    assert wide.loc[(tables.MEAN_PAIRS, "3 pairs"), "X"] == pytest.approx(50.0)
    assert math.isnan(wide.loc[(tables.MEAN_TASKS, "2 tasks"), "Y"])  # misses a row
    best = tables.best_marks(tables.long_frame(entries, "perception", "acc_chexbench"), wide)
    assert best["Y"].tolist()[:3] == ["best", "", ""] and best["X"].tolist()[:3] == [
        "",
        "best",
        "best",
    ]


def test_overview_of_the_paper_rows(loaded):
    paper = [e for e in loaded.entries if e.provenance == PAPER]
    wide = tables.overview(tables.long_frame(paper, "perception", "acc_chexbench"))
    col = "CheXagent · paper"
    assert wide.loc[("View Classification", "MIMIC-CXR"), col] == pytest.approx(97.5)
    # Hand-computed from Table 2: task means 97.1, 73.667, 35.633, 54.333, 67.6, 59.0.
    assert wide.loc[(tables.MEAN_TASKS, "6 tasks"), col] == pytest.approx(387.3333 / 6, abs=1e-3)
    assert wide.loc[(tables.MEAN_PAIRS, "14 pairs"), col] == pytest.approx(879.3 / 14)
    best = tables.best_marks(tables.long_frame(paper, "perception", "acc_chexbench"), wide)
    slake = best.loc[("Visual Question Answering", "SLAKE")]
    assert list(slake[slake == "best"].index) == ["InstructBLIP · paper"]
    openi = best.loc[("Multi-Disease Identification", "OpenI")]
    assert list(openi[openi == "best"].index) == ["XrayGPT · paper"]
    assert not (best == "tied").any().any()  # paper rows have no CI: only equal values tie
    text = tables.ci_text(tables.long_frame(paper, "perception", "acc_chexbench"))
    assert text.loc[("View Classification", "MIMIC-CXR"), col] == "97.5"


def test_a_new_task_and_metric_appear_without_code_changes():
    from leaderboard.loader import Entry

    sub = SubtaskResult(
        name="chexbench_temporal_classification_mimic_cxr",
        task="temporal_classification",
        dataset="mimic_cxr",
        kind="perception",
        n=5,
        headline="f1_macro",
        metrics={"f1_macro": MetricValue(value=0.4, ci=(0.3, 0.5))},
    )
    entry = Entry(
        Results(
            run_id="r", source="reproduced", model=ModelInfo(name="M"), subtasks={sub.name: sub}
        ),
        Path("r.json"),
        REPRODUCED,
        "M",
    )
    assert tables.metric_names([entry], "perception") == ["f1_macro"]
    wide = tables.overview(tables.long_frame([entry], "perception", "f1_macro"))
    assert wide.loc[("Temporal Classification", "MIMIC-CXR"), "M"] == pytest.approx(40.0)
    text = tables.ci_text(tables.long_frame([entry], "perception", "f1_macro"))
    assert text.iloc[0, 0] == "40.0 ± 10.0"


def test_paper_vs_reproduced_delta(loaded):
    deltas = tables.paper_deltas(loaded.entries)
    row = deltas[
        (deltas["model"] == CHEXAGENT_RUN)
        & (deltas["Dataset"] == "MIMIC-CXR")
        & (deltas["metric"] == "acc_chexbench")
    ].iloc[0]
    mine = _entry(loaded, CHEXAGENT_RUN).results.subtasks[VIEW_MIMIC]
    value = mine.metrics["acc_chexbench"].value
    assert row["delta"] == pytest.approx((value - 0.975) * 100)
    assert row["paper_in_ci"] == (value - 0.1 <= 0.975 <= value + 0.1)
    assert BLIP_RUN in set(deltas["model"])


def test_text_table_judge_and_fairness_frames(loaded):
    text = tables.text_table(loaded.entries)
    row = text[(text["Model"] == "CheXagent · paper") & (text["Dataset"] == "Private")].iloc[0]
    assert (row["bertscore_paper"], row["radgraph_score_paper"]) == ("46.6", "14.6")
    judge = tables.judge_frame(loaded.entries)
    assert judge.set_index("outcome").loc["win", "value"] == pytest.approx(0.59)
    fair = tables.fairness_frame(loaded.entries)
    assert set(fair["group"]) == {"female", "male"} and fair["gap"].iloc[0] == pytest.approx(0.07)


# ---------------------------------------------------------------- compare


def test_compare_prefers_the_comparison_block_and_flips_its_sign(loaded):
    a, b = _entry(loaded, CHEXAGENT_RUN), _entry(loaded, BLIP_RUN)
    frame = compare(a, b, loaded.entries)
    row = frame.iloc[0]
    assert row["ci_source"] == FROM_BLOCK
    assert row["delta"] == pytest.approx(12.3) and (row["ci_lo"], row["ci_hi"]) == (
        pytest.approx(4.0),
        pytest.approx(20.0),
    )


def test_compare_bootstraps_paired_samples_without_a_block(loaded):
    entries = [e for e in loaded.entries if e.results.kind != "comparison"]
    a, b = _entry(loaded, CHEXAGENT_RUN), _entry(loaded, BLIP_RUN)
    row = compare(a, b, entries).iloc[0]
    assert row["ci_source"].startswith(FROM_SAMPLES)
    va = a.results.subtasks[VIEW_MIMIC].metrics["acc_chexbench"].value
    vb = b.results.subtasks[VIEW_MIMIC].metrics["acc_chexbench"].value
    assert row["delta"] == pytest.approx((va - vb) * 100)
    assert row["ci_lo"] <= row["delta"] <= row["ci_hi"]
    paper = compare(_entry(loaded, "CheXagent · paper"), _entry(loaded, "RadFM · paper"), entries)
    assert (paper["ci_source"] == POINT_ONLY).all() and len(paper) == 14


# ---------------------------------------------------------------- submissions


def _outside_snapshot(root: Path) -> set[Path]:
    """Everything under the temp dir except the submissions folder."""
    return {p for p in root.parent.rglob("*") if "submissions" not in p.parts}


def test_valid_bundle_lands_as_pending(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    data = bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes()
    sub = submission.submit_bundle(data, results, "b.zip")
    status = json.loads((sub.folder / "status.json").read_text())
    assert status["status"] == "pending" and status["results"][0]["model"] == "MyModel"
    assert sorted(p.name for p in sub.folder.iterdir()) == [
        "my-run.json",
        "my-run.samples.jsonl",
        "status.json",
    ]
    [entry] = load_folder(results).entries
    assert entry.provenance == PENDING and entry.samples_path is not None
    # Review: accepted shows as accepted, rejected disappears.
    submission.set_status(results, sub.id, "accepted", "looks right")
    assert load_folder(results).entries[0].provenance == ACCEPTED
    submission.set_status(results, sub.id, "rejected")
    assert load_folder(results).entries == ()
    assert [h["status"] for h in submission.list_submissions(results)[0]["history"]] == [
        "pending",
        "accepted",
        "rejected",
    ]


@pytest.mark.parametrize(
    "members, reason",
    [
        ({"../evil.json": b"{}"}, "path traversal"),
        ({"ok/../../evil.json": b"{}"}, "path traversal"),
        ({"/tmp/evil.json": b"{}"}, "absolute"),
        ({"run.py": b"print(1)"}, "only .json and .jsonl"),
        ({"model.pkl": b"\x80\x04"}, "only .json and .jsonl"),
        ({"r.json": b'{"run_id": 1}'}, "schema:"),
        ({"r.json": b"[1, 2]"}, "expected a JSON object"),
        ({"s.jsonl": b'{"a": 1}\n'}, "no results JSON"),
        ({"bad name!.json": b"{}"}, "file name must match"),
    ],
)
def test_bad_bundles_are_refused_and_write_nothing(tmp_path, members, reason):
    results = tmp_path / "results"
    results.mkdir()
    data = bundle(tmp_path / "b.zip", members).read_bytes()
    before = _outside_snapshot(results)
    with pytest.raises(submission.BundleError, match=reason):
        submission.submit_bundle(data, results, "b.zip")
    assert _outside_snapshot(results) == before
    assert (
        not list((results / "submissions").glob("*"))
        if (results / "submissions").exists()
        else True
    )


def test_bundle_rules_beyond_names(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    members = valid_bundle_members()
    data = bundle(tmp_path / "ok.zip", members).read_bytes()
    with pytest.raises(submission.BundleError, match="not a zip"):
        submission.submit_bundle(b"PK-not-really", results)
    missing = {k: v for k, v in members.items() if k.endswith(".json")}
    with pytest.raises(submission.BundleError, match="samples_file"):
        submission.submit_bundle(bundle(tmp_path / "m.zip", missing).read_bytes(), results)
    paper = {"p.json": (REPO / "results/paper/radfm.json").read_bytes()}
    with pytest.raises(submission.BundleError, match="cannot be submitted"):
        submission.submit_bundle(bundle(tmp_path / "p.zip", paper).read_bytes(), results)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as archive:
        info = zipfile.ZipInfo("l.json")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(submission.BundleError, match="symbolic links"):
        submission.submit_bundle(link.read_bytes(), results)
    monkeypatch.setattr(submission, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(submission.BundleError, match="byte limit"):
        submission.submit_bundle(data, results)
    monkeypatch.undo()
    first = submission.submit_bundle(data, results)
    with pytest.raises(submission.BundleError, match=f"duplicate of submission {first.id}"):
        submission.submit_bundle(data, results)
    renamed = {"other.zip.json" if k.endswith(".json") else k: v for k, v in members.items()}
    with pytest.raises(submission.BundleError, match="duplicate"):
        submission.submit_bundle(bundle(tmp_path / "r.zip", renamed).read_bytes(), results)
    assert len(submission.list_submissions(results)) == 1
    leftovers = [p.name for p in (results / "submissions").iterdir() if p.name.startswith(".")]
    assert leftovers == [submission.LOCK_FILE]  # no staging folder left behind


def test_cli_submit_and_review(tmp_path, capsys):
    results = tmp_path / "results"
    good = bundle(tmp_path / "good.zip", valid_bundle_members())
    evil = bundle(tmp_path / "evil.zip", {"../evil.json": b"{}"})
    assert cli(["submit", str(good), "--results", str(results)]) == 0
    sub_id = capsys.readouterr().out.split()[1]
    assert cli(["submit", str(evil), "--results", str(results)]) == 2
    assert "path traversal" in capsys.readouterr().err
    assert not (tmp_path / "evil.json").exists()
    assert cli(["submissions", "list", "--results", str(results)]) == 0
    assert f"{sub_id}  pending" in capsys.readouterr().out
    assert cli(["submissions", "accept", sub_id, "--results", str(results)]) == 0
    assert cli(["submissions", "reject", "../x", "--results", str(results)]) == 2
    assert "not a submission id" in capsys.readouterr().err
    assert submission.list_submissions(results)[0]["status"] == "accepted"


def test_leaderboard_command_builds_the_streamlit_line(tmp_path):
    from harness.commands.leaderboard import app_path, streamlit_command

    cmd = streamlit_command(str(tmp_path), 8999, "127.0.0.1")
    assert app_path().is_file() and cmd[cmd.index("--server.port") + 1] == "8999"
    assert cmd[-2:] == ["--results", str(tmp_path)]
    assert cli(["leaderboard", "--results", str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------- exports


def test_overview_csv(loaded):
    paper = [e for e in loaded.entries if e.provenance == PAPER]
    wide = tables.overview(tables.long_frame(paper, "perception", "acc_chexbench"))
    frame = pd.read_csv(pd.io.common.BytesIO(overview_csv(wide)))
    row = frame[(frame["Task"] == "View Classification") & (frame["Dataset"] == "MIMIC-CXR")]
    assert row["CheXagent · paper"].item() == 97.5 and len(frame) == 16


@pytest.mark.skipif(shutil.which("chromium") is None, reason="PNG export needs chromium")
def test_png_export_renders_a_chart(loaded):
    from leaderboard import charts

    long = tables.long_frame(loaded.entries, "perception", "acc_chexbench")
    png = figure_png(charts.task_bars(long, "View Classification", "acc_chexbench"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_task_bars_escape_the_metric_name_in_every_title(loaded):
    """Plotly renders `<a href>` in titles as a live link: before, the y axis title carried a
    metric name from a results file raw."""
    from leaderboard import charts

    long = tables.long_frame(loaded.entries, "perception", "acc_chexbench")
    hostile = '<a href="https://evil.example">acc</a>'
    layout = charts.task_bars(long, "View Classification", hostile).layout.to_plotly_json()
    assert "<a href" not in json.dumps(layout)
    assert layout["yaxis"]["title"]["text"].startswith("&lt;a href=")
