"""Reader packets in a real Chromium (issue 16): what a radiologist does with the HTML page.

Before the fix a packet lost every answer when its tab closed, had no way to enlarge a film,
no comment box although the CSV has a comment column, and gave no sign that the run behind it
was synthetic. Each is driven here through Playwright on the file a reader receives, opened
from disk (file://) with nothing else loaded.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from helpers.reader_study import TASK, write_run

from harness.phantom import generate_phantom
from harness.reader_study.design import ATTRIBUTES
from harness.reader_study.export import ExportConfig, write_export
from harness.reader_study.ratings import load_key, read_ratings

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run installs it)",
    ),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("packets")
    phantom = generate_phantom(root / "phantom", n_per_pair=1, seed=0, n_text=6, n_fairness=10)
    run = write_run(root / "run", phantom.data_json)  # synthetic: the packets carry a warning
    out = root / "study"
    key = write_export(
        ExportConfig(runs=[str(run)], task=TASK, n=6, readers=2, seed=5, out=out, force=True)
    )
    return {"out": out, "key": key}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def context(browser):
    """A fresh profile per test: localStorage starts empty."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    yield ctx
    ctx.close()
    external = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    assert external == [], f"the packet loaded {external}"


def _url(study, reader: str) -> str:
    return (study["out"] / "packets" / f"{reader}.html").as_uri()


def _case(page, k: int = 0):
    return page.locator(".item").nth(k)


def _answer(page, item: str, attr: str, code: int) -> None:
    page.locator(f"input[name='{item}_{attr}'][value='{code}']").check()


def test_answers_and_comments_survive_reload_and_a_closed_tab(study, context):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(_url(study, "R1"))
    first = _case(page).get_attribute("data-item")
    second = _case(page, 1).get_attribute("data-item")
    _answer(page, first, "completeness", 2)
    _answer(page, first, "correctness", 4)
    _answer(page, second, "conciseness", 5)
    page.locator(f"textarea[name='{first}_comment']").fill("Film 2 is rotated; A misses it.")
    page.reload()
    expect(page.locator(f"input[name='{first}_completeness'][value='2']")).to_be_checked()
    expect(page.locator(f"input[name='{first}_correctness'][value='4']")).to_be_checked()
    expect(page.locator(f"textarea[name='{first}_comment']")).to_have_value(
        "Film 2 is rotated; A misses it."
    )
    page.close()  # the tab closes

    again = context.new_page()
    again.goto(_url(study, "R1"))
    expect(again.locator(f"input[name='{second}_conciseness'][value='5']")).to_be_checked()
    expect(again.locator(f"input[name='{first}_correctness'][value='4']")).to_be_checked()
    expect(again.locator(f"input[name='{first}_conciseness']:checked")).to_have_count(0)
    expect(again.locator("#progress")).to_contain_text("3 of")
    # Another reader's packet on the same computer keeps its own answers.
    other = context.new_page()
    other.goto(_url(study, "R2"))
    expect(other.locator("input[type=radio]:checked")).to_have_count(0)
    expect(other.locator(f"textarea[name='{first}_comment']")).to_have_value("")


def test_downloaded_answers_hold_the_comments_and_analyze_reads_them(study, context, tmp_path):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(_url(study, "R1"))
    items = [
        _case(page, k).get_attribute("data-item") for k in range(page.locator(".item").count())
    ]
    for k, item in enumerate(items):
        for j, attr in enumerate(ATTRIBUTES):
            _answer(page, item, attr, 1 + (k + j) % 5)
    page.locator(f"textarea[name='{items[0]}_comment']").fill(
        'Says "no effusion", but\nthere is one'
    )
    page.reload()  # what was given before a reload is in the download too
    expect(page.locator("#progress")).to_contain_text(f"{3 * len(items)} of {3 * len(items)}")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download my answers").click()
    path = tmp_path / "R1_answers.csv"
    info.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["item_id"] for r in rows] == items
    assert rows[0]["comment"] == 'Says "no effusion", but\nthere is one'
    assert all(r["comment"] == "" for r in rows[1:])
    ratings = read_ratings([path], [load_key(study["out"] / "key" / "key.json")])
    assert len(ratings) == 3 * len(items)
    assert {r.comment for r in ratings if r.opaque_id == items[0]} == {rows[0]["comment"]}


def test_click_to_zoom_a_film(study, context):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(_url(study, "R1"))
    film = page.locator("img.film").first
    small = film.bounding_box()
    film.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    big = page.locator("#viewer img")
    expect(big).to_have_attribute("src", film.get_attribute("src"))
    fit = big.bounding_box()
    assert fit["height"] > 2 * small["height"]
    page.keyboard.press("+")
    page.wait_for_function(
        "document.querySelector('#viewer img').getBoundingClientRect()"
        f".height > {fit['height'] * 1.2}"
    )
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    film.press("Enter")  # keyboard users open it too
    expect(viewer).to_be_visible()
    page.locator("#viewer button", has_text="Close").click()
    expect(viewer).to_be_hidden()


def test_synthetic_run_shows_a_warning_banner(study, context):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(_url(study, "R1"))
    banner = page.locator("#demo-warning")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("synthetic")
    assert banner.bounding_box()["y"] < 200  # at the top, before the first case
