"""The Q-Former's SDPA attention equals transformers' eager attention (float32, CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    Blip2QFormerConfig,
    Blip2QFormerModel,
    InstructBlipQFormerConfig,
    InstructBlipQFormerModel,
)

from model_adapters.qformer_sdpa import use_eager, use_sdpa


def _inputs(encoder_width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(3, 8, 64, generator=g)
    encoder = torch.randn(3, 17, encoder_width, generator=g)
    mask = torch.ones(3, 17, dtype=torch.long)
    mask[1, 11:] = 0  # a padded image-token row: the additive mask must reach the kernel
    return queries, encoder, mask


@pytest.mark.parametrize("family", ["blip2", "instructblip"])
def test_sdpa_equals_eager_and_undoes(family):
    cls, cfg_cls = (
        (Blip2QFormerModel, Blip2QFormerConfig)
        if family == "blip2"
        else (InstructBlipQFormerModel, InstructBlipQFormerConfig)
    )
    cfg = cfg_cls(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        encoder_hidden_size=48,
    )
    torch.manual_seed(0)
    model = cls(cfg).eval()
    queries, encoder, mask = _inputs(48)

    def run():
        with torch.no_grad():
            if family == "blip2":
                return model(
                    query_embeds=queries, encoder_hidden_states=encoder, encoder_attention_mask=mask
                ).last_hidden_state
            ids = torch.zeros(3, 0, dtype=torch.long)
            return model(
                input_ids=ids,
                query_embeds=queries,
                encoder_hidden_states=encoder,
                encoder_attention_mask=mask,
            ).last_hidden_state

    eager = run()
    # 2 layers: self-attention in each, cross-attention in layer 0 (every 2nd layer).
    assert use_sdpa(model) == 3
    fused = run()
    assert torch.allclose(fused, eager, atol=1e-5, rtol=0)
    assert not torch.equal(fused[1], run_with_mask_dropped(model, queries, encoder, family))
    assert use_eager(model) == 3
    assert torch.equal(run(), eager)


def run_with_mask_dropped(model, queries, encoder, family):
    """The padded row without its mask: must differ, or the test could not see a lost mask."""
    full = torch.ones(3, 17, dtype=torch.long)
    with torch.no_grad():
        kwargs = {} if family == "blip2" else {"input_ids": torch.zeros(3, 0, dtype=torch.long)}
        return model(
            query_embeds=queries,
            encoder_hidden_states=encoder,
            encoder_attention_mask=full,
            **kwargs,
        ).last_hidden_state[1]


def test_training_mode_keeps_eager_numbers():
    cfg = Blip2QFormerConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        encoder_hidden_size=48,
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    model = Blip2QFormerModel(cfg).train()
    queries, encoder, mask = _inputs(48, seed=1)
    eager = model(
        query_embeds=queries, encoder_hidden_states=encoder, encoder_attention_mask=mask
    ).last_hidden_state
    use_sdpa(model)
    again = model(
        query_embeds=queries, encoder_hidden_states=encoder, encoder_attention_mask=mask
    ).last_hidden_state
    assert torch.equal(again, eager)  # the eager path itself, not an approximation


def test_whole_chexagent_image_features():
    from chexagent.modeling import build_model

    model = build_model("tiny", seed=0).model
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager = model.get_image_features(pixels)
        assert use_sdpa(model) == 3  # tiny: 2 Q-Former layers
        fused = model.get_image_features(pixels)
    assert torch.allclose(fused, eager, atol=1e-5, rtol=0)
