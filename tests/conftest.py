"""Fixtures shared across the test folders. Shared builders live in tests/support/helpers
(importable as `helpers.*`: pyproject's pytest `pythonpath`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def phantom_conformance_items():
    """Four phantom perception items (question, options, images), generated once per session."""
    from harness.conformance import phantom_items

    return phantom_items(4)


@pytest.fixture
def single_thread():
    """One torch thread for tiny-model tests: on a shared 2-core machine, two threads spinning
    on 32-wide matmuls made the conformance checks 8x slower (8.1 s against 1.0 s measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
