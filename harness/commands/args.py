"""Arguments that several commands share: one spelling, one help text, one default each.

Commands parse with these helpers and nothing else for the shared concepts (output, seed,
bootstrap samples, model, display name, batch size), so `chexbench` and `chexagent` spell each
concept once. Old spellings keep working for one release: they are hidden from --help and
print a deprecation line naming the new one. This module must stay import-light (it runs for
every `--help`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from harness.defaults import (
    BATCH_SIZE,
    BERTSCORE_PRESET,
    BERTSCORE_PRESET_NAMES,
    BOOTSTRAP_SAMPLES,
    MAX_IMAGE_PIXELS,
    PREFETCH_BATCHES,
    SEED,
)


class DeprecatedAlias(argparse.Action):
    """A renamed option: stores into the new option's dest and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"warning: {option_string} is deprecated and will be removed in the next release; "
            f"use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def _aliases(
    p: argparse.ArgumentParser, old: Iterable[str], new: str, dest: str, type: Any = None
) -> None:
    taken = set(p._option_string_actions)
    spellings = [o for o in old if o not in taken]
    if spellings:
        p.add_argument(*spellings, action=DeprecatedAlias, new=new, dest=dest, type=type)


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1 (bootstrap samples, batch size, limits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "none" (checkpoint intervals)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seed_int(text: str) -> int:
    """argparse type for seeds: numpy and torch take 0 .. 2**32 - 1."""
    value = non_negative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type for durations and tolerances that must be > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type for prices and delays where 0 is allowed."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type for levels strictly between 0 and 1 (significance levels)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def per_stratum_rule(text: str) -> str:
    """argparse type for the fairness `--per-stratum` rule: min, median, max or a positive
    integer (as text, the way the analysis records it)."""
    if text in ("min", "median", "max"):
        return text
    try:
        return str(positive_int(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected min, median, max or a whole number >= 1, got {text!r}"
        ) from None


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-image-pixels",
        type=positive_int,
        default=None,
        help="refuse images larger than this many pixels (width x height) before "
        f"decoding them (default {MAX_IMAGE_PIXELS:,})",
    )


def add_output(p: argparse.ArgumentParser, default: Any, help: str, type: Any = None) -> None:
    p.add_argument("--output", "-o", default=default, type=type, help=help)
    _aliases(p, ["--out", "--output-dir"], "--output", "output", type)


def add_seed(
    p: argparse.ArgumentParser,
    default: int = SEED,
    help: str = "seed of the bootstrap and any other resampling (recorded in the "
    "results; default %(default)s)",
) -> None:
    p.add_argument("--seed", type=seed_int, default=default, help=help)
    _aliases(p, ["--bootstrap-seed"], "--seed", "seed", seed_int)


def add_phantom_size_and_seed(p: argparse.ArgumentParser) -> None:
    """How much phantom data, from which seed (`phantom` and `demo`); `--seed` was its old
    spelling, kept as a deprecated alias (`--seed` means the bootstrap seed elsewhere)."""
    p.add_argument(
        "--n-per-pair", type=positive_int, default=20, help="phantom items per task/dataset pair"
    )
    p.add_argument(
        "--phantom-seed",
        type=seed_int,
        default=0,
        help="seed of the phantom data (default %(default)s)",
    )
    _aliases(p, ["--seed"], "--phantom-seed", "phantom_seed", seed_int)


def add_bootstrap(p: argparse.ArgumentParser, default: int = BOOTSTRAP_SAMPLES) -> None:
    p.add_argument(
        "--bootstrap-samples",
        "-B",
        type=positive_int,
        default=default,
        dest="bootstrap_samples",
        help="bootstrap resamples per confidence interval (default %(default)s)",
    )
    _aliases(
        p,
        ["--bootstrap-b", "--bootstrap-B", "--B", "--bootstrap"],
        "--bootstrap-samples",
        "bootstrap_samples",
        positive_int,
    )


def add_batch_size(p: argparse.ArgumentParser, default: int = BATCH_SIZE) -> None:
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=default,
        help="items per forward batch (default %(default)s)",
    )


def add_prefetch(p: argparse.ArgumentParser, default: int = PREFETCH_BATCHES) -> None:
    p.add_argument(
        "--prefetch",
        type=non_negative_int,
        default=default,
        metavar="N",
        help="decode the images of the next N batches while one runs (0: decode "
        "each batch's images when it is scored; speed only; default %(default)s)",
    )


def add_display_name(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--display-name", default=None, help=help)
    _aliases(p, ["--model-name"], "--display-name", "display_name")


def add_model(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The model under test: an adapter or a preset, its arguments, and where plug-ins live."""
    p.add_argument(
        "--model", required=required, help="model adapter or preset (see `chexbench adapters`)"
    )
    add_model_options(p)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """What goes with a model name: its arguments, plug-in files and the remote-code flag."""
    p.add_argument(
        "--model-args",
        default="",
        help="comma-separated key=value arguments for the adapter, e.g. "
        "pretrained=DIR,dtype=bfloat16",
    )
    p.add_argument(
        "--adapter-file",
        action="append",
        default=[],
        help="a Python file defining extra adapters (repeatable)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow running the model's own code from its hub repository",
    )


def add_bertscore_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bertscore-preset",
        choices=BERTSCORE_PRESET_NAMES,
        default=BERTSCORE_PRESET,
        help="BERTScore configuration (docs/text-metrics.md; default %(default)s)",
    )


def model_args_from(args: argparse.Namespace) -> dict[str, Any]:
    """`--model-args` as a dict, after loading any `--adapter-file`, with the user's
    `--trust-remote-code` (the only way it is ever set)."""
    from model_adapters.loading import parse_model_args
    from model_adapters.registry import load_adapter_file

    for path in args.adapter_file:
        load_adapter_file(path)
    model_args = parse_model_args(args.model_args)
    if args.trust_remote_code:
        model_args["trust_remote_code"] = True
    return model_args
