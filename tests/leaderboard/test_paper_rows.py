"""The paper rows in results/paper, checked against the paper's own text."""

from __future__ import annotations

import functools
import re

import pytest
from helpers.leaderboard import PAPER_DIR, REPO

from harness.results_schema import Results
from harness.taxonomy import PERCEPTION_SUBTASKS, subtask_for
from leaderboard.loader import PAPER, load_folder

PAPER_TEXT = REPO.parent / "shared" / "seeds" / "chexagent-paper.txt"
TABLE2_MODELS = [
    "BLIP-2",
    "InstructBLIP",
    "XrayGPT",
    "MedFlamingo",
    "RadFM",
    "LLaVA-Med",
    "CheXagent",
]
_NUMBERS7 = re.compile(r"^(.*?)((?:\s+\d+\.\d){7})\s*$")
_TABLE34 = re.compile(r"^(\S+) (\d+B)((?: \d+\.\d){6}) (\S+) (\d+B) (\d+\.\d)$")


# ---------------------------------------------------------------- the paper rows


@functools.cache
def _paper_rows() -> dict[str, Results]:
    loaded = load_folder(PAPER_DIR)
    assert not loaded.rejected, loaded.rejected
    return {e.results.model.name: e.results for e in loaded.entries}


def _paper(model: str) -> Results:
    return _paper_rows()[model]


def test_paper_rows_are_valid_and_cited():
    loaded = load_folder(PAPER_DIR)
    assert not loaded.rejected
    assert {e.results.model.name for e in loaded.entries} >= set(TABLE2_MODELS)
    for entry in loaded.entries:
        assert entry.provenance == PAPER
        assert entry.results.run_card is None
        assert re.search(r"Table [234] \(p\. \d+\)", entry.results.citation or "")
    for model in TABLE2_MODELS:
        subs = _paper(model).subtasks
        assert {s.name for s in PERCEPTION_SUBTASKS} <= set(subs)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not at {PAPER_TEXT}")
def test_table2_matches_the_paper_text():
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("6Table2:"))
    header = next(line for line in lines[start:] if line.startswith("BLIP-2"))
    assert header.split()[:6] == TABLE2_MODELS[:6]
    rows = []
    for line in lines[start : start + 30]:
        match = _NUMBERS7.match(line)
        if match:
            rows.append((match.group(1).split()[-1], [float(x) for x in match.group(2).split()]))
    assert len(rows) == 14
    for sub, (dataset, numbers) in zip(PERCEPTION_SUBTASKS, rows, strict=True):
        assert dataset == sub.dataset.title
        for model, printed in zip(TABLE2_MODELS, numbers, strict=True):
            got = _paper(model).subtasks[sub.name].metrics["acc_chexbench"].value
            assert got == pytest.approx(printed / 100, abs=1e-9), (model, sub.name)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not at {PAPER_TEXT}")
def test_tables_3_and_4_match_the_paper_text():
    rows = [
        m
        for line in PAPER_TEXT.read_text(encoding="utf-8").splitlines()
        if (m := _TABLE34.match(line))
    ]
    assert len(rows) == 5
    gen_private = subtask_for("findings_generation", "private").name
    gen_mimic = subtask_for("findings_generation", "mimic_cxr").name
    summ = subtask_for("findings_summarization", "mimic_cxr").name
    metrics = ["bertscore_paper", "chexbert_score_paper", "radgraph_score_paper"]
    for m in rows:
        numbers = [float(x) for x in m.group(3).split()]
        subs = _paper(m.group(1)).subtasks
        for i, metric in enumerate(metrics):
            assert subs[gen_private].metrics[metric].value == pytest.approx(numbers[i] / 100)
            assert subs[gen_mimic].metrics[metric].value == pytest.approx(numbers[3 + i] / 100)
        rouge = _paper(m.group(4)).subtasks[summ].metrics["rougeL"].value
        assert rouge == pytest.approx(float(m.group(6)) / 100)
