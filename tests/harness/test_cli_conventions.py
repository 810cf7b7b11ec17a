"""The two command lines follow one set of conventions, checked over every parser.

One spelling per concept (bootstrap samples, output, seed, model), help on every flag, old
spellings still accepted with a deprecation line, and `--help` that imports none of the heavy
libraries (a user asking for help should not wait for torch).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from harness.cli import build_parser as chexbench_parser
from harness.commands.args import DeprecatedAlias

HEAVY = ("torch", "scipy", "transformers", "lm_eval", "pandas")


def _chexagent_parser() -> argparse.ArgumentParser:
    from chexagent.cli import build_parser

    return build_parser()


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def visible_options():
    for prog, parser in (("chexbench", chexbench_parser()), ("chexagent", _chexagent_parser())):
        for path, p in walk(parser):
            for action in p._actions:
                if isinstance(action, DeprecatedAlias | argparse._HelpAction):
                    continue
                if isinstance(action, argparse._SubParsersAction | argparse._VersionAction):
                    continue
                yield " ".join((prog, *path)), action


# Concept -> (pattern an option of that concept matches, the one allowed spelling(s)).
CONCEPTS = {
    "bootstrap samples": (
        re.compile(r"^--(b|bootstrap.*|.*resamples?)$", re.I),
        {"--bootstrap-samples"},
    ),
    "output location": (re.compile(r"^--(out|output|output-.*|out-.*)$"), {"--output"}),
    "seed": (re.compile(r"seed"), {"--seed", "--api-seed", "--phantom-seed", "--subset-seed"}),
    "model name": (
        re.compile(r"^--(model|model-name|name|judge-model|display-name)$"),
        {"--model", "--judge-model", "--display-name"},
    ),
}


def test_one_spelling_per_concept():
    wrong = []
    for command, action in visible_options():
        for option in action.option_strings:
            for concept, (pattern, allowed) in CONCEPTS.items():
                if pattern.search(option) and option not in allowed:
                    wrong.append(f"{command} {option}: {concept} is spelled {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)


def test_bootstrap_samples_is_one_dest_everywhere():
    dests = {
        action.dest
        for _, action in visible_options()
        if "--bootstrap-samples" in action.option_strings
    }
    assert dests == {"bootstrap_samples"}


def test_every_flag_has_help():
    missing = [
        f"{command} {'/'.join(a.option_strings) or a.dest}"
        for command, a in visible_options()
        if not a.help
    ]
    assert not missing, "\n".join(missing)


def test_old_spellings_work_with_a_deprecation_line(capsys):
    parser = chexbench_parser()
    args = parser.parse_args(["compare", "a.json", "b.json", "--bootstrap-b", "300", "--out", "x"])
    assert args.bootstrap_samples == 300 and str(args.output) == "x"
    err = capsys.readouterr().err
    assert "--bootstrap-b is deprecated" in err and "--bootstrap-samples" in err
    assert "--out is deprecated" in err


def _help_commands() -> list[list[str]]:
    out = []
    for prog, parser in (
        ("harness.cli", chexbench_parser()),
        ("chexagent.cli", _chexagent_parser()),
    ):
        for path, _ in walk(parser):
            out.append([prog, *path])
    return out


@pytest.mark.parametrize("command", _help_commands(), ids=lambda c: " ".join(c))
def test_help_imports_no_heavy_library(command):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert not heavy, f"{' '.join(command)} --help imports {heavy}"
