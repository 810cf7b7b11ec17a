"""The Figure 8 template is the paper's text, and the last-line parser is strict."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.judge.prompt import DEFAULT_TEMPLATE_PATH, load_template, parse_verdict

PAPER = Path("/work/shared/seeds/chexagent-paper.txt")


@pytest.mark.skipif(not PAPER.is_file(), reason="paper text not available")
def test_default_template_is_figure8_verbatim_up_to_whitespace():
    # The PDF extraction dropped spaces and mis-decoded curly quotes (UTF-8 read as Mac Roman);
    # every other character must match the paper exactly, in order.
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("We would like to request"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("Figure8:"))
    paper = "".join(lines[start:end])
    paper = paper.replace("\u201a\u00c4\u00fa", "\u201c").replace("\u201a\u00c4\u00f9", "\u201d")
    ours = load_template().text
    assert re.sub(r"\s+", "", ours) == re.sub(r"\s+", "", paper)


def test_template_hash_is_of_the_prompt_text():
    t = load_template()
    assert t.source == "figure8"
    assert t.sha256 == hashlib.sha256(t.text.encode("utf-8")).hexdigest()
    assert not t.text.endswith("\n")


def test_render_fills_each_slot_once_without_injection():
    t = load_template()
    out = t.render("REF", "one says [report2]", "TWO")
    assert "[Reference Report]\nREF\n[End of Reference Report]" in out
    assert "[Assistant 1]\none says [report2]\n[Assistant 1]" in out
    assert "[Assistant 2]\nTWO\n[End of Assistant 2]" in out


def test_user_template_without_placeholders_is_rejected(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("Compare [report1] and [report2].\n")
    with pytest.raises(UserError, match=r"\[reference\]"):
        load_template(bad)
    good = tmp_path / "g.txt"
    good.write_text("[reference] [report1] [report2]\n")
    assert load_template(good).source == str(good)
    assert load_template(good).sha256 != load_template().sha256
    assert DEFAULT_TEMPLATE_PATH.is_file()


@pytest.mark.parametrize(
    "text,verdict",
    [
        ("reasoning\nAssistant 1 is better than Assistant 2", "better"),
        ("reasoning\nAssistant 1 is worse than Assistant 2.", "worse"),
        ("reasoning\n**Assistant 1 is equal to Assistant 2**\n\n", "equal"),
        ("reasoning\n\u201cAssistant 1 is better than Assistant 2\u201d", "better"),
        ("reasoning\n  assistant 1 IS  worse than assistant 2  ", "worse"),
        ("Assistant 1 is better than Assistant 2\nOn reflection they are similar.", "unparseable"),
        (
            "reasoning\nAssistant 1 is better than Assistant 2 because of the effusion",
            "unparseable",
        ),
        ("reasoning\nAssistant 2 is better than Assistant 1", "unparseable"),
        ("Label: better", "unparseable"),
        ("", "unparseable"),
        (None, "unparseable"),
    ],
)
def test_parse_last_line(text, verdict):
    assert parse_verdict(text) == verdict
