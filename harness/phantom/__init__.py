"""A deterministic phantom CheXbench: synthetic radiographs with known findings.

Lets the harness, the demo and the training package run end to end where the real (gated)
data sets are not available, with every label traceable to the attribute that drew it.
"""

from harness.phantom.attributes import DEMO_DISPARITY, Disparity, Findings, Patient
from harness.phantom.writer import FAIRNESS_QUESTION, PhantomResult, generate_phantom

__all__ = ["DEMO_DISPARITY", "FAIRNESS_QUESTION", "Disparity", "Findings", "Patient", "PhantomResult",
           "generate_phantom"]
