"""The reference CheXagent training package (architectures, CheXinstruct, the four stages)."""

from pathlib import Path

# The tiny demo model `chexagent demo-train` writes and `chexbench demo` evaluates.
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "demo-model"
