"""Every tab of the page through Streamlit's AppTest (the real script, no browser)."""

from __future__ import annotations

import re

import pytest
from helpers.leaderboard import REPO, VIEW_MIMIC, build_folder, perception_results, write_json
from streamlit.testing.v1 import AppTest

APP = str(REPO / "leaderboard" / "app.py")
CHEXAGENT_RUN = "CheXagent · reproduced · partial"  # 20 items of Table 9's 400
BLIP_RUN = "BLIP-2 · reproduced · partial"
TABS = ["Overview", "Per task", "Text", "Fairness", "Compare", "Drill-down", "Run card", "Submit"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict:
    """Three runs of the page (each rerun costs seconds, so widgets change in batches);
    each stage keeps its own element tree."""
    root = build_folder(tmp_path_factory.mktemp("app") / "results")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHEXBENCH_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=90)
    out = {"initial": _snapshot(at.run())}
    at.radio(key="bars-task").set_value("Image-Text Reasoning")
    at.selectbox(key="cmp-a").set_value(CHEXAGENT_RUN)
    at.selectbox(key="cmp-b").set_value(BLIP_RUN)
    at.selectbox(key="dd-run").set_value(CHEXAGENT_RUN)
    at.selectbox(key="card-row").set_value(CHEXAGENT_RUN)
    out["selected"] = _snapshot(at.run())
    at.toggle(key="overview-ci").set_value(True)
    at.toggle(key="show-demo").set_value(True)
    at.toggle(key="dd-wrong").set_value(True)
    at.selectbox(key="cmp-b").set_value("RadFM · paper")
    at.selectbox(key="card-row").set_value("CheXagent · paper")
    out["toggled"] = _snapshot(at.run())
    mp.undo()
    return out


def _snapshot(at: AppTest) -> dict:
    assert not at.exception, at.exception
    return {"tabs": {t.label: t for t in at.tabs}, "expanders": list(at.expander)}


def test_page_renders_every_tab_and_the_rejected_panel(stages):
    first = stages["initial"]
    assert list(first["tabs"]) == TABS
    panel = first["expanders"][0]
    assert panel.label == "2 results file(s) rejected"
    assert set(panel.dataframe[0].value["file"]) == {"bad_schema.json", "broken.json"}


def test_overview_shows_table2_values_best_and_means(stages):
    tab = stages["initial"]["tabs"]["Overview"]
    table = tab.dataframe[0].value
    assert table.loc[("View Classification", "MIMIC-CXR"), "CheXagent · paper"] == 97.5
    assert table.columns[0] == "CheXagent · paper"  # ranked by mean over tasks
    assert table.columns[1] == CHEXAGENT_RUN  # a reproduction sits beside its paper row
    assert "DemoModel · synthetic demo" not in table.columns
    assert table.index[-2][0] == "Mean over tasks"
    html = tab.get("html")[0].proto.body
    assert ">97.5<" in html and "chexbench-overview" in html
    deltas = tab.dataframe[1].value
    assert set(deltas["model"]) == {CHEXAGENT_RUN, BLIP_RUN}


def test_ci_toggle_and_demo_toggle(stages):
    tab = stages["toggled"]["tabs"]["Overview"]
    html = tab.get("html")[0].proto.body
    assert ">90.0 ± 7.5<" in html  # the demo row, shown only with the toggle, with its CI
    assert "95% CI 80.0–95.0 · n=20" in html  # hover text
    assert "DemoModel · synthetic demo" in tab.dataframe[0].value.columns


def test_per_task_bars_switch_task(stages):
    first = stages["initial"]["tabs"]["Per task"]
    assert first.radio[0].options[0] == "View Classification"
    assert "View Classification" in first.get("plotly_chart")[0].proto.spec
    charts = stages["selected"]["tabs"]["Per task"].get("plotly_chart")
    assert len(charts) == 1 and "Image-Text Reasoning" in charts[0].proto.spec


def _html_rows(html: str) -> list[list[str]]:
    """Cell texts per body row of a pandas-Styler HTML table."""
    body = html.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in body.split("</tr>")[:-1]]


def test_text_tab_shows_tables_3_and_4_and_the_judge(stages):
    tab = stages["initial"]["tabs"]["Text"]
    assert [s.value for s in tab.subheader][:2] == ["Findings Generation", "Findings Summarization"]
    gen_html, summ_html = (h.proto.body for h in tab.get("html"))
    header = re.findall(r"<th[^>]*>([^<]*)</th>", gen_html.split("<tbody>")[0])
    rows = {(r[0], r[1]): dict(zip(header, r, strict=True)) for r in _html_rows(gen_html)}
    chexagent = rows[("MIMIC-CXR", "CheXagent · paper")]
    assert (
        chexagent["bertscore_paper"],
        chexagent["chexbert_score_paper"],
        chexagent["radgraph_score_paper"],
    ) == ("50.4", "24.9", "18.6")
    assert "rougeL" not in header  # columns nobody reports for a task are dropped
    assert ["MIMIC-CXR", "FLAN-T5 · paper", "paper", "42.5"] in _html_rows(summ_html)
    assert len(tab.get("plotly_chart")) == 1  # judge bars
    assert tab.dataframe[0].value["position_flip_rate"].item() == 0.07


def test_fairness_tab(stages):
    tab = stages["initial"]["tabs"]["Fairness"]
    assert tab.subheader[0].value == "CheXagent · reproduced · fairness"
    assert len(tab.get("plotly_chart")) == 1
    assert tab.dataframe[0].value["gap"].item() == 0.07


def test_compare_tab_uses_the_comparison_block(stages):
    tab = stages["selected"]["tabs"]["Compare"]
    table = tab.dataframe[0].value
    assert table["delta"].item() == pytest.approx(12.3)
    assert table["ci_source"].item() == "comparison block (paired)"
    assert not tab.warning
    assert len(stages["toggled"]["tabs"]["Compare"].warning) == 1  # vs a paper row: points only


def test_drilldown_filters_wrong_answers(stages):
    tab = stages["selected"]["tabs"]["Drill-down"]
    words = tab.caption[0].value.split()
    right, total = int(words[0]), int(words[2])
    assert total == 20 and 0 < right < 20
    assert len(tab.expander) == 10  # one page
    first = tab.expander[0]
    assert list(first.dataframe[0].value["option"]) == ["(A) AP", "(B) PA", "(C) Lateral", "(D) LL"]
    assert len(first.get("image")) == 1  # the thumbnail resolved beside the results file
    wrong = stages["toggled"]["tabs"]["Drill-down"]
    assert f"showing {total - right} items" in wrong.caption[0].value
    assert wrong.expander and all(e.label.startswith(":material/cancel:") for e in wrong.expander)


def test_run_card_tab(stages):
    tab = stages["selected"]["tabs"]["Run card"]
    assert '"seed": 1234' in tab.json[1].value or '"seed":1234' in tab.json[1].value
    paper = stages["toggled"]["tabs"]["Run card"]
    assert "Table 2 (p. 7)" in paper.markdown[1].value.replace("\\", "")  # Markdown-escaped
    assert "no run card" in paper.caption[0].value


def test_submit_tab_lists_nothing_yet(stages):
    tab = stages["initial"]["tabs"]["Submit"]
    assert tab.get("file_uploader")
    assert tab.caption[0].value == "None yet."


def test_per_task_radio_shows_a_task_name_from_a_file_as_text(tmp_path, monkeypatch):
    """Radio options render Markdown: before, a task slug from a results file became a live
    link in the Per task tab's task picker."""
    results = perception_results("x", "X", {VIEW_MIMIC: (0.9, 0.8, 0.95)}, n=400)
    obj = results.model_dump(mode="json")
    obj["subtasks"][VIEW_MIMIC]["task"] = "[click](https://evil.example)"
    write_json(tmp_path / "results" / "x.json", obj)
    monkeypatch.setenv("CHEXBENCH_RESULTS", str(tmp_path / "results"))
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception, at.exception
    [option] = at.radio(key="bars-task").options
    assert option.startswith("\\[Click\\]\\(") and "](" not in option
