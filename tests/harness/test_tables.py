"""`chexbench results show` prints a file's text as text: Rich markup in a model name is shown,
not obeyed (before: "[/bold]" crashed, "[link=...]" became a live link), and a terminal
escape in it is shown as `\\x1b`, never sent to the terminal."""

from __future__ import annotations

import io
import json
import re

import pytest
from helpers.leaderboard import VIEW_MIMIC, perception_results
from rich.console import Console

from harness.cli import main as cli
from harness.tables import print_results

NAMES = {
    "closing-tag": "Evil[/bold] model",
    "link": "[link=https://example.org/x]click me[/link]",
    "ansi": "Red\x1b[31m model\x1b[0m",
    "osc8-link": "\x1b]8;;https://example.org\x1b\\click\x1b]8;;\x1b\\",
}


def _file(tmp_path, name: str):
    results = perception_results("r", name, {VIEW_MIMIC: (0.6, 0.5, 0.7)})
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results.model_dump(mode="json")))
    return path


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_results_show_prints_names_literally(tmp_path, capsys, name):
    assert cli(["results", "show", str(_file(tmp_path, name))]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # nothing reaches the terminal as a control sequence
    shown = name.replace("\x1b", "\\x1b")
    assert shown in out.replace("\n", ""), out


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_a_real_terminal_gets_no_link_and_no_foreign_escape(tmp_path, name):
    """On a colour terminal Rich writes its own styles; the name must add no hyperlink
    (OSC 8) and no escape of its own."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=200)
    print_results(json.loads(_file(tmp_path, name).read_text()), console=console)
    out = buffer.getvalue()
    assert "\x1b]8;" not in out  # no hyperlink
    assert "\x1b[31m" not in out  # Rich's styles are its own: bold, italic, never the name's red
    foreign = re.sub(r"\x1b\[[0-9;]*m", "", out)  # Rich's SGR styles removed
    assert "\x1b" not in foreign
    assert name.replace("\x1b", "\\x1b") in foreign.replace("\n", "")
