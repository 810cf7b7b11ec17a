"""Provenance that editing a field cannot forge, the default view, and "best" among comparable
rows only.

The measured failure this guards against: a random-weight run on 4 phantom items per pair
(75.0 ± 37.5), relabelled `"source": "reproduced"`, was accepted by `chexbench submit`, shown
in the default view beside the paper rows, and marked best on SIIM and Image-Text Reasoning.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from helpers.leaderboard import (
    OFFICIAL_SHA,
    REPO,
    VIEW_MIMIC,
    build_folder,
    bundle,
    perception_results,
    valid_bundle_members,
    write_json,
    write_official,
    write_results,
)
from streamlit.testing.v1 import AppTest

from harness.cli import main as cli
from harness.results_schema import MetricValue, ModelInfo, Results, SubtaskResult
from harness.taxonomy import PERCEPTION_SUBTASKS
from leaderboard import submission, tables
from leaderboard.loader import ACCEPTED, DEMO, PAPER, PENDING, REPRODUCED, Entry, load_folder
from leaderboard.provenance import Provenance

APP = str(REPO / "leaderboard" / "app.py")
SIIM = ("Binary Disease Classification", "SIIM")
ITR = ("Image-Text Reasoning", "OpenI")
ALL_PAIRS = [s.name for s in PERCEPTION_SUBTASKS]


def phantom_bundle(path: Path, **changes: object) -> Path:
    """A smoke model on 4 phantom items per pair, 3 right (75.0, CI 25.0–100.0), as
    `chexbench demo --smoke` writes it, with `changes` applied to the results JSON."""
    results = perception_results(
        "phantom-run",
        "Phantom",
        {n: (0.75, 0.25, 1.0) for n in ALL_PAIRS},
        source="demo",
        samples_file="phantom.samples.jsonl",
        n=4,
        synthetic=True,
        smoke=True,
        data_sha256="ab" * 32,
    )
    obj = results.model_dump(mode="json")
    for dotted, value in changes.items():
        node = obj
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    rows = [
        {"task": n, "item_id": f"{n}/{i}", "correct": i < 3} for n in ALL_PAIRS for i in range(4)
    ]
    return bundle(
        path,
        {
            "phantom.json": json.dumps(obj).encode(),
            "phantom.samples.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
        },
    )


# ---------------------------------------------------------------- submit refuses the phantom


@pytest.mark.parametrize(
    "changes",
    [
        {"source": "reproduced"},
        {"source": "submitted"},
        {"source": "reproduced", "run_card__synthetic": False},  # smoke weights still say so
        {"source": "reproduced", "model__smoke": False},  # the run card still says phantom data
    ],
    ids=["relabelled", "as-submitted", "synthetic-false", "smoke-false"],
)
def test_a_relabelled_phantom_run_is_refused(tmp_path, capsys, changes):
    results = tmp_path / "results"
    path = phantom_bundle(tmp_path / "phantom.zip", **changes)
    assert cli(["submit", str(path), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "synthetic run cannot be submitted" in err and len(err.strip().splitlines()) == 1
    assert not (results / "submissions").exists() or not submission.list_submissions(results)


def test_a_phantom_with_every_flag_forged_is_flagged_and_never_best(tmp_path, capsys):
    """Editing synthetic, smoke and source still leaves evidence: the data hash is no official
    data.json and n is 4 of Table 9's 100-807. It can be submitted, waits hidden as pending,
    and even if a maintainer accepted it, it is labelled and never called best."""
    results = build_folder(tmp_path / "results", with_extras=False)
    write_official(results, OFFICIAL_SHA)
    path = phantom_bundle(
        tmp_path / "forged.zip", source="reproduced", run_card__synthetic=False, model__smoke=False
    )
    assert cli(["submit", str(path), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "is not listed in" in out and "n=4 of 100 (Table 9)" in out
    [sub] = submission.list_submissions(results)
    assert cli(["submissions", "list", "--results", str(results)]) == 0
    assert "n=4 of 400 (Table 9)" in capsys.readouterr().out
    [entry] = [e for e in load_folder(results).entries if e.results.run_id == "phantom-run"]
    assert entry.provenance == PENDING and not entry.comparable
    assert entry.label == "Phantom · submitted (pending) · unverified data · partial"

    default = _overview(results)
    assert not any("Phantom" in c for c in default.columns)  # pending: not in the default view
    submission.set_status(results, sub["id"], "accepted")
    accepted = _overview(results)
    label = "Phantom · submitted (accepted) · unverified data · partial"
    assert label in accepted.columns
    best = accepted.best_cells()
    assert best[SIIM] == ["CheXagent · paper"] and best[ITR] == ["CheXagent · paper"]
    assert not any(label in cells for cells in best.values())


# ---------------------------------------------------------------- the default view


def test_pending_rows_only_behind_the_toggle_and_marked(tmp_path):
    results = build_folder(tmp_path / "results", with_extras=False)
    data = bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes()
    submission.submit_bundle(data, results, "b.zip")
    default = _overview(results)
    assert not any(c.startswith("MyModel") for c in default.columns)
    assert not any("Pending" in w for w in default.warnings)
    shown = _overview(results, toggles={"show-pending": True})
    assert [c for c in shown.columns if c.startswith("MyModel")] == [
        "MyModel · submitted (pending) · unverified data · partial"
    ]
    assert any("Pending submissions are shown" in w for w in shown.warnings)


def test_reproduced_and_accepted_rows_are_in_the_default_view(tmp_path):
    results = build_folder(tmp_path / "results", with_extras=False)
    write_official(results, OFFICIAL_SHA)
    write_results(
        results / "runs" / "full.json",
        perception_results("full", "FullRun", {VIEW_MIMIC: (0.9, 0.87, 0.93)}, n=400),
    )
    data = bundle(tmp_path / "b.zip", valid_bundle_members()).read_bytes()
    sub = submission.submit_bundle(data, results, "b.zip")
    submission.set_status(results, sub.id, "accepted")
    columns = _overview(results).columns
    assert "FullRun · reproduced" in columns  # official data, Table 9's n: no flag
    assert "MyModel · submitted (accepted) · partial" in columns
    assert "CheXagent · paper" in columns


# ---------------------------------------------------------------- provenance from evidence


def test_data_hash_decides_verified_and_the_list_is_the_maintainers(tmp_path):
    root = tmp_path / "results"
    write_results(
        root / "runs" / "a.json",
        perception_results("a", "A", {VIEW_MIMIC: (0.9, 0.87, 0.93)}, n=400, data_sha256="cd" * 32),
    )
    [entry] = load_folder(root).entries
    assert entry.provenance == REPRODUCED and entry.flags == ("unverified data",)
    assert "is not listed in official_data.json" in entry.trust.reasons[0]
    write_official(root, "cd" * 32)
    [entry] = load_folder(root).entries
    assert entry.flags == () and entry.comparable and entry.label == "A · reproduced"
    write_json(root / "official_data.json", {"data_sha256": {"not-a-hash": "x"}})
    loaded = load_folder(root)
    assert loaded.entries[0].flags == ("unverified data",)  # a broken list trusts nothing
    assert "'not-a-hash' is not a lower-case hex sha256" in loaded.rejected[0].reason


def test_source_is_only_a_claim(tmp_path):
    root = tmp_path / "results"
    claims = {
        "demo-claim": dict(source="demo"),
        "smoke": dict(smoke=True),
        "synthetic": dict(synthetic=True),
    }
    for run_id, change in claims.items():
        write_results(
            root / "runs" / f"{run_id}.json",
            perception_results(run_id, run_id, {VIEW_MIMIC: (0.9, 0.87, 0.93)}, n=400, **change),
        )
    # A paper-looking file in a submission folder is a submission.
    (root / "submissions" / "x").mkdir(parents=True)
    (root / "submissions" / "x" / "p.json").write_bytes(
        (REPO / "results" / "paper" / "radfm.json").read_bytes()
    )
    prov = {e.results.run_id: e.provenance for e in load_folder(root).entries}
    assert prov == {"demo-claim": DEMO, "smoke": DEMO, "synthetic": DEMO, "paper-radfm": PENDING}


def test_a_paper_claim_outside_results_paper_is_pending_and_never_best(tmp_path):
    """Before: a local run edited to drop its run card and say `source: paper` became a
    trusted paper row, comparable and marked best (99.9 beats the paper's 97.5)."""
    root = build_folder(tmp_path / "results", with_extras=False)
    write_official(root, OFFICIAL_SHA)
    forged = perception_results("forged", "Forged", {VIEW_MIMIC: (0.999, 0.99, 1.0)}, n=400)
    obj = forged.model_dump(mode="json")
    del obj["run_card"]
    obj["source"] = "paper"
    write_json(root / "runs" / "forged.json", obj)
    # A real paper row copied out of paper/ is no paper row either.
    (root / "radfm-copy.json").write_bytes((REPO / "results/paper/radfm.json").read_bytes())
    entries = load_folder(root).entries
    outside = [e for e in entries if e.path.parent != root / "paper"]
    assert sorted(e.path.name for e in outside) == ["forged.json", "radfm-copy.json"]
    for entry in outside:
        assert entry.provenance == PENDING and not entry.comparable
        assert entry.trust.reasons == ("claims source 'paper' outside results/paper/",)
    inside = [e for e in entries if e.path.parent == root / "paper"]
    assert len(inside) == len(list((REPO / "results" / "paper").glob("*.json")))
    assert all(e.provenance == PAPER and e.comparable for e in inside)

    long = tables.long_frame(entries, "perception", "acc_chexbench")
    marks = tables.best_marks(long, tables.overview(long)).loc[("View Classification", "MIMIC-CXR")]
    assert marks["CheXagent · paper"] == tables.BEST
    assert marks["Forged · submitted (pending)"] == ""
    page = _overview(root)
    assert "CheXagent · paper" in page.columns
    assert not any(c.startswith("Forged") for c in page.columns)  # hidden by default


def test_partial_coverage_is_per_subtask(tmp_path):
    root = tmp_path / "results"
    write_official(root, OFFICIAL_SHA)
    results = perception_results("p", "P", {VIEW_MIMIC: (0.9, 0.87, 0.93)}, n=400)
    short = perception_results(
        "s", "P", {"chexbench_view_classification_chexpert": (0.9, 0.8, 0.95)}, n=299
    )
    results.subtasks.update(short.subtasks)
    write_results(root / "p.json", results)
    [entry] = load_folder(root).entries
    assert entry.flags == ("partial",)
    assert entry.trust.reasons == (
        "chexbench_view_classification_chexpert: n=299 of 300 (Table 9)",
    )
    assert entry.comparable_subtask(VIEW_MIMIC)
    assert not entry.comparable_subtask("chexbench_view_classification_chexpert")


# ---------------------------------------------------------------- best and tied


def test_best_is_among_comparable_rows_and_overlapping_cis_tie(tmp_path):
    root = build_folder(tmp_path / "results", with_extras=False)
    write_official(root, OFFICIAL_SHA)
    runs = {
        "close": (0.965, 0.95, 0.98),  # CI reaches the paper's 97.5: tied, not beaten
        "far": (0.90, 0.87, 0.93),  # CI below 97.5: beaten, no mark
    }
    for run_id, acc in runs.items():
        write_results(
            root / "runs" / f"{run_id}.json",
            perception_results(run_id, run_id.title(), {VIEW_MIMIC: acc}, n=400),
        )
    write_results(
        root / "runs" / "better-unverified.json",
        perception_results(
            "unverified",
            "Unverified",
            {VIEW_MIMIC: (0.99, 0.98, 1.0)},
            n=400,
            data_sha256="ef" * 32,
        ),
    )
    write_results(
        root / "runs" / "better-partial.json",
        perception_results("partial", "Partial", {VIEW_MIMIC: (0.99, 0.98, 1.0)}, n=399),
    )
    entries = load_folder(root).entries
    long = tables.long_frame(entries, "perception", "acc_chexbench")
    wide = tables.overview(long)
    marks = tables.best_marks(long, wide).loc[("View Classification", "MIMIC-CXR")]
    assert marks["CheXagent · paper"] == tables.BEST
    assert marks["Close · reproduced"] == tables.TIED
    assert marks["Far · reproduced"] == ""
    assert marks["Unverified · reproduced · unverified data"] == ""  # 99.0, but not comparable
    assert marks["Partial · reproduced · partial"] == ""
    # Lower is better (RadCliQ): the smallest comparable value wins.
    low = tables.best_marks(long, wide, higher_is_better=False).loc[
        ("View Classification", "MIMIC-CXR")
    ]
    assert low[low == tables.BEST].index.tolist() == ["LLaVA-Med · paper"]  # 23.8
    # The page shows the same marks as classes on the cells.
    page = _overview(root)
    assert page.cell_classes(("View Classification", "MIMIC-CXR")) == {
        "CheXagent · paper": "best",
        "Close · reproduced": "tied",
    }


def test_generated_letters_never_compete_with_log_likelihood_columns(tmp_path):
    """A run that generated its multiple-choice letters (`--mc-mode generate`) is scored by
    another protocol: it is marked best among such runs only, never against the paper's."""
    root = build_folder(tmp_path / "results", with_extras=False)
    write_official(root, OFFICIAL_SHA)
    generated = perception_results("gen", "Gen", {VIEW_MIMIC: (0.999, 0.99, 1.0)}, n=400)
    generated.run_card.mc_mode = "generate"
    write_results(root / "runs" / "gen.json", generated)
    write_results(
        root / "runs" / "ll.json",
        perception_results("ll", "Ll", {VIEW_MIMIC: (0.90, 0.87, 0.93)}, n=400),
    )
    entries = load_folder(root).entries
    long = tables.long_frame(entries, "perception", "acc_chexbench")
    assert set(long["protocol"]) == {"loglikelihood", "generate"}
    wide = tables.overview(long)
    marks = tables.best_marks(long, wide).loc[("View Classification", "MIMIC-CXR")]
    gen = next(c for c in marks.index if c.startswith("Gen"))
    assert "MC by generation" in gen
    assert marks[gen] == tables.BEST  # best of its own protocol (the only one there)
    assert marks["CheXagent · paper"] == tables.BEST  # 97.5 beats nothing it cannot compare with
    assert marks["Ll · reproduced"] == ""


def test_mean_rows_compete_only_among_fully_comparable_columns():
    def results(name, values):
        return Results(
            run_id=name,
            source="reproduced",
            model=ModelInfo(name=name),
            subtasks={
                s.name: SubtaskResult(
                    name=s.name,
                    task=s.task.slug,
                    dataset=s.dataset.slug,
                    kind="perception",
                    n=s.paper_n,
                    metrics={"acc_chexbench": MetricValue(value=v)},
                )
                for s, v in zip(PERCEPTION_SUBTASKS[:2], values, strict=True)
            },
        )

    good = Entry(
        results("Good", [0.5, 0.5]), Path("g.json"), REPRODUCED, "Good", Provenance(REPRODUCED)
    )
    half = Entry(
        results("Half", [0.9, 0.9]),
        Path("h.json"),
        ACCEPTED,
        "Half",
        Provenance(ACCEPTED, ("partial",), frozenset({PERCEPTION_SUBTASKS[1].name})),
    )
    long = tables.long_frame([good, half], "perception", "acc_chexbench")
    wide = tables.overview(long)
    marks = tables.best_marks(long, wide)
    assert marks["Half"].tolist() == ["best", "", "", ""]  # its full row competes; not its mean
    assert marks["Good"].tolist() == ["", "best", "best", "best"]


# ---------------------------------------------------------------- page helpers


class _Overview:
    def __init__(self, at: AppTest):
        assert not at.exception, at.exception
        tab = next(t for t in at.tabs if t.label == "Overview")
        self.html = tab.get("html")[0].proto.body
        self.warnings = [w.value for w in at.warning]
        head = self.html.split("<tbody>")[0]
        self.columns = {
            int(c): re.sub("<[^>]+>", "", text)
            for c, text in re.findall(
                r'<th[^>]*class="col_heading level0 col(\d+)"[^>]*>(.*?)</th>', head
            )
        }
        self.columns = [_unescape(self.columns[i]) for i in sorted(self.columns)]
        body = self.html.split("<tbody>")[1]
        self.rows = {}
        task = None
        for row in body.split("</tr>")[:-1]:
            heads = re.findall(
                r'<th[^>]*class="row_heading level(\d) row(\d+)"[^>]*>(.*?)</th>', row
            )
            for level, number, text in heads:
                if level == "0":
                    task = _unescape(text)
                else:
                    self.rows[(task, _unescape(text))] = int(number)
        self.css = self.html.split("</style>")[1] if self.html.count("</style>") > 1 else ""

    def _cells_styled(self, needle: str) -> set[tuple[int, int]]:
        found = set()
        for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", self.css):
            if needle in body:
                found |= {(int(r), int(c)) for r, c in re.findall(r"_row(\d+)_col(\d+)", selectors)}
        return found

    def best_cells(self) -> dict[tuple[str, str], list[str]]:
        """Columns drawn in the bold "best" style, per (task, dataset) row."""
        bold = self._cells_styled("font-weight: 700")
        return {
            key: [self.columns[c] for r, c in sorted(bold) if r == row]
            for key, row in self.rows.items()
        }

    def cell_classes(self, key: tuple[str, str]) -> dict[str, str]:
        row = self.rows[key]
        out = {}
        for col, classes in re.findall(
            rf'<td[^>]*class="data row{row} col(\d+) ?([^"]*)"', self.html
        ):
            if classes.strip():
                out[self.columns[int(col)]] = classes.strip()
        return out


def _unescape(text: str) -> str:
    return html.unescape(text).strip()


def _overview(root: Path, toggles: dict[str, bool] | None = None) -> _Overview:
    mp = pytest.MonkeyPatch()
    mp.setenv("CHEXBENCH_RESULTS", str(root))
    try:
        at = AppTest.from_file(APP, default_timeout=90).run()
        for key, value in (toggles or {}).items():
            at.toggle(key=key).set_value(value)
        if toggles:
            at.run()
        return _Overview(at)
    finally:
        mp.undo()
