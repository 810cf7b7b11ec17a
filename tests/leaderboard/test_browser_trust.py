"""In a real Chromium: uploaders' text is shown as text on every tab, and the default view holds
only trusted rows (paper, reproduced, accepted), pending ones behind a toggle and marked.

Before: a model name holding HTML drew a red heading and a live link in the overview (scripts
were stripped by Streamlit's sanitizer, the rest was not), and pending submissions stood in
the default view beside the paper rows.
"""

from __future__ import annotations

import pytest
from helpers.browser import browser_page, needs_chromium, serve
from helpers.leaderboard import (
    OFFICIAL_SHA,
    build_folder,
    bundle,
    run_card,
    valid_bundle_members,
    write_official,
    write_results,
)

from harness.results_schema import MetricValue, ModelInfo, Results, SubtaskResult
from leaderboard import submission

pytestmark = needs_chromium

EVIL = (
    '<h1 style="color:red">Evil</h1><a href="https://example.org/x">link</a>'
    '<img src=x onerror="window.pwned=1">'
)
QUESTION = "[click](https://example.org/q) :red[alarm] <b>bold</b> $x^2$"
FOREIGN = 'a[href^="https://example.org"]'
ZWSP = "\u200b"  # Markdown text carries zero-width spaces that break URL and :code: patterns


def _text(locator) -> str:
    return (locator.text_content() or "").replace(ZWSP, "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("trust")
    root = build_folder(base / "results", with_extras=False)
    write_official(root, OFFICIAL_SHA)
    evil = submission.submit_bundle(
        bundle(
            base / "evil.zip",
            valid_bundle_members(model=EVIL, run_id="evil-run", question=QUESTION),
        ).read_bytes(),
        root,
        "evil.zip",
    )
    submission.set_status(root, evil.id, "accepted")
    submission.submit_bundle(
        bundle(
            base / "pending.zip", valid_bundle_members(model="PendingModel", run_id="pending-run")
        ).read_bytes(),
        root,
        "pending.zip",
    )
    text = SubtaskResult(
        name="chexbench_findings_summarization",
        task="findings_summarization",
        dataset="mimic_cxr",
        kind="text",
        n=20,
        headline="rougeL",
        metrics={"rougeL": MetricValue(value=0.3, ci=(0.2, 0.4))},
    )
    write_results(
        root / "runs" / "evil-text.json",
        Results(
            run_id="evil-text",
            source="reproduced",
            model=ModelInfo(name=EVIL),
            run_card=run_card(),
            subtasks={text.name: text},
        ),
    )
    write_results(
        root / "runs" / "evil-fairness.json",
        Results(
            run_id="evil-fair",
            kind="fairness",
            source="reproduced",
            model=ModelInfo(name=EVIL),
            run_card=run_card(),
            fairness={
                "task": "cardiomegaly",
                "attributes": {
                    "sex": {
                        "groups": {
                            EVIL: {"f1_mean": 0.7, "f1_std": 0.1, "n_subjects": 9, "n_items": 20}
                        },
                        "gap": {"value": 0.0},
                    }
                },
            },
        ),
    )
    with serve(root, base) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server) as page:
        yield page


def _no_markup_escaped(page, where) -> None:
    from playwright.sync_api import expect

    expect(where.locator("h1", has_text="Evil")).to_have_count(0)
    expect(page.locator(FOREIGN)).to_have_count(0)
    expect(page.locator("img[src=x]")).to_have_count(0)
    assert page.evaluate("window.pwned") is None


def test_overview_shows_a_name_with_html_as_text(page):
    from playwright.sync_api import expect

    table = page.locator("table.chexbench-overview")
    expect(table).to_be_visible()
    expect(table.locator("thead")).to_contain_text(EVIL + " · submitted (accepted) · partial")
    _no_markup_escaped(page, table)


def test_default_view_holds_trusted_rows_and_pending_is_a_marked_toggle(page):
    from playwright.sync_api import expect

    head = page.locator("table.chexbench-overview thead")
    expect(head).to_contain_text("CheXagent · paper")
    expect(head).not_to_contain_text("PendingModel")
    page.get_by_text("Show pending submissions").click()
    expect(head).to_contain_text("PendingModel · submitted (pending) · partial")
    expect(page.get_by_text("Pending submissions are shown")).to_be_visible()
    page.get_by_text("Show pending submissions").click()
    expect(head).not_to_contain_text("PendingModel")


def test_per_task_chart_draws_no_link(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Per task").click()
    panel = page.get_by_role("tabpanel", name="Per task")
    legend = panel.locator(".legendtext", has_text="Evil")
    expect(legend).to_have_count(1)
    assert "<h1" in legend.text_content() and "<a href" in legend.text_content()
    expect(panel.locator("svg a")).to_have_count(0)
    _no_markup_escaped(page, panel)


def test_text_and_fairness_tabs_escape_names(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Text").click()
    panel = page.get_by_role("tabpanel", name="Text")
    table = panel.locator("table.chexbench-text").filter(has_text="Evil")  # summarization
    expect(table).to_contain_text(EVIL + " · reproduced")
    _no_markup_escaped(page, panel)
    page.get_by_role("tab", name="Fairness").click()
    panel = page.get_by_role("tabpanel", name="Fairness")
    headings = [_text(h) for h in panel.locator("h3").all()]
    assert EVIL + " · reproduced · fairness" in headings, headings
    expect(panel.locator("svg a")).to_have_count(0)
    _no_markup_escaped(page, panel)


def test_drilldown_shows_the_question_as_written(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Drill-down").click()
    panel = page.get_by_role("tabpanel", name="Drill-down")
    first = panel.locator("details").first
    expect(first.locator("summary")).to_contain_text("view_classification/0")
    assert QUESTION in _text(first.locator("summary"))
    first.locator("summary").click()
    expect(first).to_contain_text("Question:")
    assert "Question: " + QUESTION in _text(first)
    expect(panel.locator("b", has_text="bold")).to_have_count(0)
    expect(panel.locator(".katex")).to_have_count(0)  # no $...$ maths
    _no_markup_escaped(page, panel)
