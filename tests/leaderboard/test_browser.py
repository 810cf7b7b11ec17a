"""The leaderboard served by Streamlit and driven in a real Chromium through Playwright."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.browser import browser_page, needs_chromium, serve
from helpers.leaderboard import build_folder, bundle, valid_bundle_members

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    root = build_folder(base / "results", with_extras=False)
    with serve(root, base) as url:
        yield url, root, base


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server[0]) as page:
        yield page


def _tree(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if "submissions" not in p.relative_to(base).parts}


def test_overview_shows_the_paper_numbers(page, tmp_path):
    from playwright.sync_api import expect

    table = page.locator("table.chexbench-overview")
    expect(table).to_be_visible()
    expect(table.locator("thead")).to_contain_text("CheXagent · paper")
    row = table.locator("tbody tr", has_text="MIMIC-CXR").first
    expect(row).to_contain_text("View Classification")
    # CheXagent is the first model column (ranked by mean over tasks).
    expect(row.locator("td").first).to_have_text("97.5")
    page.set_viewport_size({"width": 1600, "height": 1500})
    page.wait_for_timeout(500)
    shot = tmp_path / "leaderboard-overview.png"  # tests write only under tmp_path
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_text_tab_shows_table3(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Text").click()
    panel = page.get_by_role("tabpanel", name="Text")
    expect(panel.get_by_role("heading", name="Findings Generation")).to_be_visible()
    table = panel.locator("table.chexbench-text").first
    # CheXagent on MIMIC-CXR: BERT-S 50.4, CheXbert-S 24.9, RadGraph-S 18.6 (Table 3).
    row = table.locator("tbody tr", has_text="CheXagent · paper").filter(has_text="MIMIC-CXR")
    expect(row).to_contain_text("50.4")
    expect(row).to_contain_text("24.9")
    expect(row).to_contain_text("18.6")


def _upload(page, path: Path) -> None:
    page.get_by_role("tab", name="Submit").click()
    page.get_by_role("tabpanel", name="Submit").locator("input[type=file]").set_input_files(
        str(path)
    )


def test_valid_bundle_lands_as_pending(page, server):
    from playwright.sync_api import expect

    _, root, base = server
    good = bundle(base / "good.zip", valid_bundle_members())
    _upload(page, good)
    panel = page.get_by_role("tabpanel", name="Submit")
    expect(panel.get_by_text(re.compile(r"Submission .* received"))).to_be_visible()
    statuses = list((root / "submissions").glob("*/status.json"))
    assert len(statuses) == 1 and '"status": "pending"' in statuses[0].read_text()


@pytest.mark.parametrize(
    "members, reason",
    [
        ({"../evil.json": b"{}"}, "path traversal"),
        ({"results.json": b'{"run_id": "x", "source": "reproduced"}'}, "schema:"),
    ],
)
def test_invalid_bundle_is_rejected_and_writes_nothing(page, server, members, reason):
    from playwright.sync_api import expect

    _, root, base = server
    zipped = bundle(base.parent / f"bad-{reason[:4]}.zip", members)  # outside the watched tree
    before = _tree(base)
    subs_before = sorted((root / "submissions").iterdir())
    _upload(page, zipped)
    panel = page.get_by_role("tabpanel", name="Submit")
    expect(panel.get_by_text(re.compile(f"Rejected: .*{re.escape(reason)}"))).to_be_visible()
    assert _tree(base) == before
    assert sorted((root / "submissions").iterdir()) == subs_before
    assert not (root / "evil.json").exists() and not (base / "evil.json").exists()
