"""Every numeric option of `chexbench` and `chexagent` is range-checked when the command line is
parsed: a bare `type=int` / `type=float` lets 0, -1 or 2**40 through to a traceback later."""

from __future__ import annotations

import argparse

import pytest

from harness.cli import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _parsers():
    from chexagent.cli import build_parser as chexagent_parser

    yield from (("chexbench", *p) for p in _walk(build_parser()))
    yield from (("chexagent", *p) for p in _walk(chexagent_parser()))


def test_no_numeric_option_takes_any_number():
    loose = [
        f"{prog} {' '.join(path)} {'/'.join(action.option_strings)}"
        for prog, path, parser in _parsers()
        for action in parser._actions
        if action.type in (int, float) and not action.choices
    ]
    assert not loose, "\n".join(loose)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["compare", "a.json", "b.json", "--alpha", "1.5"], "--alpha"),
        (["compare", "a.json", "b.json", "--bootstrap-b", "0"], "--bootstrap-b"),
        (["leaderboard", "--port", "70000"], "--port"),
        (["check-adapter", "--model", "chexagent", "--tolerance", "-1"], "--tolerance"),
        (["judge", "--timeout", "0"], "--timeout"),
        (["judge", "--price-in", "nan"], "--price-in"),
        (["phantom", "--output", "x", "--phantom-seed", "-5"], "--phantom-seed"),
        (
            ["data", "validate", "--data", "x.json", "--max-image-pixels", "-1"],
            "--max-image-pixels",
        ),
    ],
)
def test_a_bad_number_is_one_line_naming_the_option(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in argv (`--output x`) stay in the temp dir
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and flag in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before anything was written
