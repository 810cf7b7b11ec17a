"""The leaderboard served by Streamlit and driven in a real Chromium through Playwright."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_leaderboard_data import build_folder, bundle, valid_bundle_members

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install chromium; .ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    root = build_folder(base / "results", with_extras=False)
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "leaderboard" / "app.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--results", str(root)]
    log = open(base / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=base,
                            env=dict(os.environ, CHEXBENCH_RESULTS=str(root)))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((base / "streamlit.log").read_text())
        time.sleep(0.3)
    yield url, root, base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=45_000)  # the first script run imports pandas, plotly, ...
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(45_000)
        page.goto(server[0])
        yield page
        browser.close()


def _tree(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if "submissions" not in p.relative_to(base).parts}


def test_overview_shows_the_paper_numbers(page, server):
    from playwright.sync_api import expect

    table = page.locator("table.chexbench-overview")
    expect(table).to_be_visible()
    expect(table.locator("thead")).to_contain_text("CheXagent · paper")
    row = table.locator("tbody tr", has_text="MIMIC-CXR").first
    expect(row).to_contain_text("View Classification")
    # CheXagent is the first model column (ranked by mean over tasks).
    expect(row.locator("td").first).to_have_text("97.5")
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1600, "height": 1500})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "leaderboard-overview.png"), full_page=True)


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
        str(path))


def test_valid_bundle_lands_as_pending(page, server):
    from playwright.sync_api import expect

    _, root, base = server
    good = bundle(base / "good.zip", valid_bundle_members())
    _upload(page, good)
    panel = page.get_by_role("tabpanel", name="Submit")
    expect(panel.get_by_text(re.compile(r"Submission .* received"))).to_be_visible()
    statuses = list((root / "submissions").glob("*/status.json"))
    assert len(statuses) == 1 and '"status": "pending"' in statuses[0].read_text()


@pytest.mark.parametrize("members, reason", [
    ({"../evil.json": b"{}"}, "path traversal"),
    ({"results.json": b'{"run_id": "x", "source": "reproduced"}'}, "schema:"),
])
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
