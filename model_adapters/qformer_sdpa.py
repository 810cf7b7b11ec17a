"""The Q-Former's attention through torch's fused scaled-dot-product attention.

transformers 4.57 runs the BLIP-2 and InstructBLIP Q-Formers in eager attention only
(`Blip2QFormerModel._supports_sdpa = False`): a score matrix per head is materialised, scaled,
masked, soft-maxed and multiplied by the values in separate kernels. The fused kernel computes
the same softmax(q k^T / sqrt(d) + mask) v, so an eval-mode block without relative positions,
head masks or saved attention maps can use it and give the same numbers up to float rounding
(tests/model_adapters/test_qformer_sdpa.py: <= 1e-5 in float32).

Not switched on by any adapter: the Q-Former is about 2% of CheXagent-8b's image FLOPs, and on
the CPU SDPA made it 1.10x faster (paper shape, 4 images, median of 7 interleaved pairs), i.e.
about 0.2% of an item. `bench/bench_gpu_chexagent8b.py` measures it on the GPU (arm
`after_sdpa`); docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

_BLOCKS = ("Blip2QFormerMultiHeadAttention", "InstructBlipQFormerMultiHeadAttention")


def _sdpa_forward(
    self,
    hidden_states,
    attention_mask=None,
    head_mask=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    **kwargs: Any,
):
    """transformers' eager forward, with the score/softmax/value products fused. Anything the
    fused kernel cannot reproduce (training dropout, head masks, saved or returned attention
    maps) goes back to the eager forward."""
    if (
        self.training
        or head_mask is not None
        or self.save_attention
        or kwargs.get("output_attentions")
    ):
        return type(self).forward(
            self,
            hidden_states,
            attention_mask,
            head_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            **kwargs,
        )
    cross = encoder_hidden_states is not None
    source = encoder_hidden_states if cross else hidden_states
    mask = encoder_attention_mask if cross else attention_mask
    key = self.transpose_for_scores(self.key(source))
    value = self.transpose_for_scores(self.value(source))
    query = self.transpose_for_scores(self.query(hidden_states))
    if mask is not None:  # the extended additive mask (0 or the dtype's minimum)
        mask = mask.to(query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    out = out.permute(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], self.all_head_size)
    return out, None


def use_sdpa(model: torch.nn.Module) -> int:
    """Route every eligible Q-Former attention block in `model` through SDPA; returns how many.

    Blocks with relative position embeddings are left eager (the fused kernel has no place for
    their extra score terms)."""
    count = 0
    for module in model.modules():
        if (
            type(module).__name__ in _BLOCKS
            and getattr(module, "position_embedding_type", "absolute") == "absolute"
        ):
            module.forward = types.MethodType(_sdpa_forward, module)
            count += 1
    return count


def use_eager(model: torch.nn.Module) -> int:
    """Undo `use_sdpa`: the blocks' own (eager) forward again; returns how many."""
    count = 0
    for module in model.modules():
        if "forward" in vars(module) and getattr(module.forward, "__func__", None) is _sdpa_forward:
            del module.forward
            count += 1
    return count
