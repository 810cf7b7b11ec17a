"""A deterministic phantom CheXbench: synthetic radiographs with known findings.

Lets the harness, the demo and the training package run end to end where the real (gated)
data sets are not available, with every label traceable to the attribute that drew it.
Names are imported on first use, so `harness.phantom.attributes` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEMO_DISPARITY": "attributes",
    "Disparity": "attributes",
    "Findings": "attributes",
    "Patient": "attributes",
    "FAIRNESS_QUESTION": "writer",
    "PhantomResult": "writer",
    "generate_phantom": "writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.phantom' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.phantom.{_EXPORTS[name]}"), name)
