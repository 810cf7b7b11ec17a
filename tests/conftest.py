"""Fixtures shared across the test folders. Shared builders live in tests/support/helpers
(importable as `helpers.*`: pyproject's pytest `pythonpath`)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# transformers copies a trust_remote_code model's code into its modules cache (by default
# ~/.cache/huggingface/modules), keyed by the model folder's name: the suite's tiny remote-code
# models would write into $HOME and could load another session's stale copy. A cache of the
# session's own, set before anything imports transformers (it reads the variable on import).
_MODULES = tempfile.mkdtemp(prefix="chexbench-tests-hf-modules-")
os.environ["HF_MODULES_CACHE"] = _MODULES
atexit.register(shutil.rmtree, _MODULES, ignore_errors=True)


@pytest.fixture(scope="session")
def phantom_conformance_items(tmp_path_factory):
    """Four phantom perception items (question, options, images), generated once per session."""
    from harness.conformance import phantom_items

    return phantom_items(4, folder=tmp_path_factory.mktemp("conformance"))


@pytest.fixture
def single_thread():
    """One torch thread for tiny-model tests: on a shared 2-core machine, two threads spinning
    on 32-wide matmuls made the conformance checks 8x slower (8.1 s against 1.0 s measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
