"""RadFM: 3D ViT + perceiver + LLaMA, written natively on current torch + transformers."""

from model_adapters.radfm.adapter import RadFMAdapter

__all__ = ["RadFMAdapter"]
