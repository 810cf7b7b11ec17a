"""Med-Flamingo: OpenFlamingo written natively on current torch + transformers."""

from model_adapters.medflamingo.adapter import MedFlamingoAdapter

__all__ = ["MedFlamingoAdapter"]
