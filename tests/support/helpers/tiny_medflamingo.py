"""A tiny Med-Flamingo in the released layout (open-flamingo 0.0.2's `model.pt` names), with its
LLaMA and CLIP folders: what the adapter and conformance tests load through the real path."""

from __future__ import annotations

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from helpers.tiny_tokenizers import llama_tokenizer

HID, VIS, LAYERS, XATTN = 64, 32, 8, (3, 7)


def released_state(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """What open-flamingo 0.0.2's get_checkpoint writes, spelled out from its module layout."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix, dim, sd):
        sd[prefix + ".weight"] = 1 + w(dim, scale=0.1)
        sd[prefix + ".bias"] = w(dim, scale=0.1)

    sd: dict[str, torch.Tensor] = {"perceiver.latents": w(64, VIS, scale=1.0)}
    for i in range(6):
        p = f"perceiver.layers.{i}."
        ln(p + "0.norm_media", VIS, sd)
        ln(p + "0.norm_latents", VIS, sd)
        sd[p + "0.to_q.weight"] = w(512, VIS)
        sd[p + "0.to_kv.weight"] = w(1024, VIS)
        sd[p + "0.to_out.weight"] = w(VIS, 512, scale=0.05)
        ln(p + "1.0", VIS, sd)
        sd[p + "1.1.weight"] = w(4 * VIS, VIS)
        sd[p + "1.3.weight"] = w(VIS, 4 * VIS, scale=0.1)
    ln("perceiver.norm", VIS, sd)
    for i in XATTN:
        p = f"lang_encoder.gated_cross_attn_layers.{i}."
        ln(p + "attn.norm", HID, sd)
        sd[p + "attn.to_q.weight"] = w(512, HID)
        sd[p + "attn.to_kv.weight"] = w(1024, VIS)
        sd[p + "attn.to_out.weight"] = w(HID, 512, scale=0.1)
        sd[p + "attn_gate"] = torch.tensor([0.8])
        ln(p + "ff.0", HID, sd)
        sd[p + "ff.1.weight"] = w(4 * HID, HID)
        sd[p + "ff.3.weight"] = w(HID, 4 * HID, scale=0.1)
        sd[p + "ff_gate"] = torch.tensor([0.5])
        for k in [k for k in sd if k.startswith(p)]:
            alias = f"lang_encoder.model.layers.{i}.gated_cross_attn_layer." + k[len(p) :]
            sd[alias] = sd[k].clone()
    sd["lang_encoder.model.embed_tokens.weight"] = w(vocab, HID, scale=1.0)
    for i in range(LAYERS):  # persistent buffers of 2023 transformers
        sd[f"lang_encoder.model.layers.{i}.decoder_layer.self_attn.rotary_emb.inv_freq"] = (
            1.0 / 10000 ** (torch.arange(0, 16, 2).float() / 16)
        )
    return sd


def build_tiny(root):
    """The tiny model's files in the released layout (also used for `chexbench run` checks)."""
    torch.manual_seed(0)
    tok = llama_tokenizer()  # LLaMA-7B's (SentencePiece, legacy fast layout)
    tok.save_pretrained(root / "llama-7b-hf")
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=HID,
            intermediate_size=128,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
        )
    )
    llama.save_pretrained(root / "llama-7b-hf")
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=VIS,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    clip.save_pretrained(root / "clip-vit-large-patch14")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root / "clip-vit-large-patch14")
    vocab = len(tok) + 3  # + <|endofchunk|>, <image>, <PAD> (open_flamingo 0.0.2 factory.py)
    state = released_state(vocab)
    torch.save(state, root / "model.pt")
    return state, llama, clip
