"""What a reader needs to trust or reproduce a number: versions, commit, hashes, settings."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness import __version__
from harness.results_schema import RunCard

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "lm-eval",
    "tokenizers",
    "accelerate",
    "numpy",
    "scipy",
    "statsmodels",
    "pandas",
    "matplotlib",
    "pillow",
    "rouge-score",
    "bert-score",
    "radgraph",
    "f1chexbert",
    "scikit-learn",
    "nltk",
    "openai",
    "httpx",
)
TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks" / "chexbench"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The harness commit, with "+dirty" when the working tree has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def task_config_hashes(task_names: list[str]) -> dict[str, str]:
    """sha256 of each task YAML plus the shared template and hooks it uses."""
    shared = b"".join(
        (TASKS_DIR / f).read_bytes() for f in ("_perception_template.yaml", "utils.py")
    )
    out = {}
    for name in task_names:
        path = TASKS_DIR / f"{name}.yaml"
        if path.is_file():
            out[name] = hashlib.sha256(path.read_bytes() + shared).hexdigest()
    return out


def make_run_card(
    *,
    seed: int,
    device: str | None,
    dtype: str | None,
    data_file: str | None,
    data_sha256: str | None,
    tasks: list[str],
    wall_time_s: float | None,
    command: list[str] | None,
    synthetic: bool,
    **extra: Any,
) -> RunCard:
    known = {k: extra.pop(k) for k in ("bootstrap", "mc_mode", "batch_size") if k in extra}
    return RunCard(
        harness_version=__version__,
        harness_commit=git_commit(),
        packages=package_versions(),
        command=command,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        wall_time_s=wall_time_s,
        device=device,
        dtype=dtype,
        seed=seed,
        data_file=data_file,
        data_sha256=data_sha256,
        task_config_sha256=task_config_hashes(tasks),
        synthetic=synthetic,
        extra=extra,
        **known,
    )


def analysis_run_card(
    seed: int, bootstrap: dict[str, Any], inputs: list[Path], extra: dict[str, Any] | None = None
) -> RunCard:
    """Provenance for an analysis of saved files: inputs (with sha256), seed, bootstrap."""
    return RunCard(
        harness_version=__version__,
        harness_commit=git_commit(),
        packages=package_versions(),
        command=["chexbench", *sys.argv[1:]] if sys.argv else None,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seed=seed,
        bootstrap=bootstrap,
        extra={
            "inputs": [
                {"path": str(p), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()}
                for p in inputs
            ],
            **(extra or {}),
        },
    )
