"""A tiny RadFM in the released layout (`MultiLLaMAForCausalLM` names in pytorch_model.bin) with
its LLaMA language files: what the adapter and conformance tests load through the real path."""

from __future__ import annotations

import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from helpers.tiny_tokenizers import llama_tokenizer

SPEC = dict(
    image_size=64,
    frames=16,
    patch_size=32,
    frame_patch_size=4,
    dim=48,
    depth=2,
    heads=2,
    dim_head=8,
    mlp_dim=64,
    num_latents=32,
    perceiver_depth=2,
    perceiver_heads=2,
    perceiver_dim_head=8,
)
HID = 64
E = "embedding_layer."


def released_state(llama: LlamaForCausalLM, seed: int = 0) -> dict[str, torch.Tensor]:
    """`MultiLLaMAForCausalLM.state_dict()` names, spelled out from the released modules."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def lin(prefix, out_f, in_f, sd, bias=True, scale=0.2):
        sd[prefix + ".weight"] = w(out_f, in_f, scale=scale)
        if bias:
            sd[prefix + ".bias"] = w(out_f, scale=0.05)

    def ln(prefix, dim, sd):
        sd[prefix + ".weight"] = 1 + w(dim, scale=0.1)
        sd[prefix + ".bias"] = w(dim, scale=0.1)

    sd = {f"lang_model.{k}": v.clone() for k, v in llama.state_dict().items()}
    for i in range(len(llama.model.layers)):
        sd[f"lang_model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    sd[E + "weight"] = sd["lang_model.model.embed_tokens.weight"]  # tied in the released model
    sd[E + "figure_token_weight"] = w(2, HID, scale=1.0)
    d, pd = SPEC["dim"], 3 * 32 * 32 * 4
    v = E + "vision_encoder."
    ln(v + "to_patch_embedding.1", pd, sd)
    lin(v + "to_patch_embedding.2", d, pd, sd, scale=0.02)
    ln(v + "to_patch_embedding.3", d, sd)
    sd[v + "pos_embedding.row_embed.weight"] = torch.rand(2, d // 3, generator=g)
    sd[v + "pos_embedding.col_embed.weight"] = torch.rand(2, d // 3, generator=g)
    sd[v + "pos_embedding.dep_embed.weight"] = torch.rand(4, d // 3, generator=g)
    for i in range(SPEC["depth"]):
        p = f"{v}transformer.layers.{i}."
        ln(p + "0.norm", d, sd)
        lin(p + "0.fn.to_qkv", 3 * 16, d, sd, bias=False)
        lin(p + "0.fn.to_out.0", d, 16, sd)
        ln(p + "1.norm", d, sd)
        lin(p + "1.fn.net.0", 64, d, sd)
        lin(p + "1.fn.net.3", d, 64, sd)
    p = E + "perceiver."
    sd[p + "latents"] = w(32, d, scale=1.0)
    for i in range(SPEC["perceiver_depth"]):
        q = f"{p}layers.{i}."
        ln(q + "0.norm_media", d, sd)
        ln(q + "0.norm_latents", d, sd)
        lin(q + "0.to_q", 16, d, sd, bias=False)
        lin(q + "0.to_kv", 32, d, sd, bias=False)
        lin(q + "0.to_out", d, 16, sd, bias=False)
        ln(q + "1.0", d, sd)
        lin(q + "1.1", 4 * d, d, sd, bias=False)
        lin(q + "1.3", d, 4 * d, sd, bias=False)
    ln(p + "norm", d, sd)
    lin(E + "fc", HID, d, sd)
    # training-only heads of the released file (dropped by the loader)
    sd[E + "bert_model.embeddings.word_embeddings.weight"] = w(10, 8)
    sd[E + "bert_projection_fc.weight"] = w(d, 8)
    sd[E + "transformer_decoder.layers.0.linear1.weight"] = w(8, d)
    sd[E + "transformer_decoder_mlp.0.weight"] = w(12, d)
    sd[E + "output_upscaling.1.running_mean"] = w(12)
    sd[E + "cls_head.weight"] = w(1, 6)
    return sd


def build_tiny(root):
    """The tiny model's files in the released layout (also used for `chexbench run` checks)."""
    torch.manual_seed(0)
    tok = llama_tokenizer()  # Language_files/tokenizer.model: LLaMA's
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=HID,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    )
    llama = LlamaForCausalLM(config).eval()
    tok.save_pretrained(root / "Language_files")
    config.save_pretrained(root / "Language_files")
    (root / "radfm_vision.json").write_text(json.dumps(SPEC))
    state = released_state(llama)
    torch.save(state, root / "pytorch_model.bin")
    return state, llama
