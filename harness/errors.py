"""The two kinds of failure, and nothing else the CLI needs to know.

`UserError` and its subclasses are mistakes a user can fix (a missing file, an unknown model
argument, bad data): the CLI prints them in one line and exits 2. Everything else is a bug and
keeps its traceback; `InvariantError` names the bugs the harness checks for itself (a results
file that fails its own schema, sample rows that disagree with lm-eval's means).

Subclasses also derive from the builtin a caller would naturally catch (FileNotFoundError for
missing weights, TypeError for unknown keyword arguments), so library users keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from harness.safe_text import printable


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what and how to fix it."""


class InvariantError(AssertionError):
    """The harness produced something that breaks its own invariants: a bug, never input."""


class WeightsMissing(UserError, FileNotFoundError):
    """Model weights are not where the user pointed; the message says what to download."""


class UnknownArgument(UserError, TypeError):
    """A `--model-args` key (or similar option) the component does not take."""


class RemoteCodeRefused(UserError, PermissionError):
    """A model needs code from its hub repository and the user has not allowed it."""


class OutputError(UserError, OSError):
    """A file or folder the harness must write cannot be written: the disk is full, the file
    system is read-only, or permission is denied. Nothing half-written is left behind."""


def one_line(exc: BaseException) -> str:
    """An error as the single line the CLI prints: embedded newlines folded, and control
    characters (an ANSI escape in a bundle's file name, say) shown as escapes, not obeyed."""
    return printable(" ".join(str(exc).split())) or exc.__class__.__name__


def did_you_mean(kind: str, name: str, known: Iterable[str], hint: str = "") -> UserError:
    """An unknown-name error that suggests the closest known names (or lists them all)."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = "" if close else f"; known: {', '.join(known)}"
    return UserError(f"unknown {kind} {name!r}{suggestion}{listing}{hint}")
