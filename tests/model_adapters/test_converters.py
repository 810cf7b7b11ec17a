"""Converters: every original key maps, strays are refused by name, logits survive conversion.

The references are small direct forwards written here over the ORIGINAL-layout tensors
(EVA ViT + BERT Q-Former as in MiniGPT-4's eva_vit.py/Qformer.py; LLaVA's CLIP tower ->
mm_projector -> splice), with the LLM half run by transformers' LLaMA/Mistral class loaded from
the original tensors: the converted model must give the same logits within 1e-5.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_release import (
    QFORMER,
    VISION,
    write_tiny_llava_med_release,
    write_tiny_xraygpt_release,
)

from harness.cli import main
from model_adapters.converters.common import ConversionError, read_state_dict
from model_adapters.converters.llava_med import convert_llava_med
from model_adapters.converters.xraygpt import convert_xraygpt

HEADS = {"vit_heads": VISION["heads"], "qformer_heads": QFORMER["heads"]}


@pytest.fixture(scope="module")
def xray(tmp_path_factory):
    root = tmp_path_factory.mktemp("xraygpt")
    src = write_tiny_xraygpt_release(root / "src")
    manifest = convert_xraygpt(src, root / "dst", vit_depth=VISION["layers"], **HEADS)
    return src, root / "dst", manifest


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    src = write_tiny_llava_med_release(root / "src")
    convert_llava_med(src, root / "dst")
    src0 = write_tiny_llava_med_release(root / "src0", seed=3, v0=True)
    convert_llava_med(src0, root / "dst0", vision_tower=src0 / "clip")
    return root


# ----- XrayGPT ---------------------------------------------------------------------------------
def _attn(x, kv, wq, bq, wk, bk, wv, bv, heads):
    b, n, d = x.shape
    q = F.linear(x, wq, bq).view(b, n, heads, -1).transpose(1, 2)
    k = F.linear(kv, wk, bk).view(b, kv.shape[1], heads, -1).transpose(1, 2)
    v = F.linear(kv, wv, bv).view(b, kv.shape[1], heads, -1).transpose(1, 2)
    a = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    return (a @ v).transpose(1, 2).reshape(b, n, -1)


def minigpt4_image_embeds(vit, qf, proj, pixels, depth, heads_v, heads_q):
    """MiniGPT-4 encode_img over the original key names (eva_vit.py, Qformer.py, mini_gpt4.py)."""
    x = (
        F.conv2d(
            pixels,
            vit["patch_embed.proj.weight"],
            vit["patch_embed.proj.bias"],
            stride=VISION["patch"],
        )
        .flatten(2)
        .transpose(1, 2)
    )
    x = torch.cat([vit["cls_token"].expand(x.shape[0], -1, -1), x], 1) + vit["pos_embed"]
    d = x.shape[-1]
    for b in range(depth):
        p = f"blocks.{b}."
        h = F.layer_norm(x, (d,), vit[p + "norm1.weight"], vit[p + "norm1.bias"], 1e-6)
        bias = torch.cat([vit[p + "attn.q_bias"], torch.zeros(d), vit[p + "attn.v_bias"]])
        w = vit[p + "attn.qkv.weight"]
        a = _attn(
            h, h, w[:d], bias[:d], w[d : 2 * d], bias[d : 2 * d], w[2 * d :], bias[2 * d :], heads_v
        )
        x = x + F.linear(a, vit[p + "attn.proj.weight"], vit[p + "attn.proj.bias"])
        h = F.layer_norm(x, (d,), vit[p + "norm2.weight"], vit[p + "norm2.bias"], 1e-6)
        x = x + F.linear(
            F.gelu(F.linear(h, vit[p + "mlp.fc1.weight"], vit[p + "mlp.fc1.bias"])),
            vit[p + "mlp.fc2.weight"],
            vit[p + "mlp.fc2.bias"],
        )
    img = F.layer_norm(x, (d,), qf["ln_vision.weight"], qf["ln_vision.bias"], 1e-5)

    def lin(name, t):
        return F.linear(t, qf[name + ".weight"], qf[name + ".bias"])

    def ln(name, t):
        return F.layer_norm(t, (t.shape[-1],), qf[name + ".weight"], qf[name + ".bias"], 1e-12)

    q = ln("Qformer.bert.embeddings.LayerNorm", qf["query_tokens"].expand(x.shape[0], -1, -1))
    for n in range(QFORMER["layers"]):
        p = f"Qformer.bert.encoder.layer.{n}."
        for kind in ["attention"] + (["crossattention"] if n % 2 == 0 else []):
            kv = img if kind == "crossattention" else q
            s = p + kind + ".self."
            a = _attn(
                q,
                kv,
                qf[s + "query.weight"],
                qf[s + "query.bias"],
                qf[s + "key.weight"],
                qf[s + "key.bias"],
                qf[s + "value.weight"],
                qf[s + "value.bias"],
                heads_q,
            )
            q = ln(p + kind + ".output.LayerNorm", lin(p + kind + ".output.dense", a) + q)
        h = F.gelu(lin(p + "intermediate_query.dense", q))
        q = ln(p + "output_query.LayerNorm", lin(p + "output_query.dense", h) + q)
    return F.linear(q, proj["llama_proj.weight"], proj["llama_proj.bias"])


def test_xraygpt_every_key_mapped_and_documented_parts_dropped(xray):
    src, dst, manifest = xray
    from transformers import Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(dst)
    assert manifest["n_tensors"] == len(model.state_dict())
    # The EVA block MiniGPT-4 never builds, EVA's final norm and the Q-Former text branch go.
    assert f"blocks.{VISION['layers']}.attn.qkv.weight" in manifest["discarded"]["vit"]
    assert "norm.weight" in manifest["discarded"]["vit"]
    assert (
        "Qformer.bert.encoder.layer.0.intermediate.dense.weight" in manifest["discarded"]["qformer"]
    )
    assert (
        "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"
        not in manifest["discarded"]["qformer"]
    )


def test_xraygpt_logits_match_original_layout_reference(xray):
    from transformers import LlamaForCausalLM

    from model_adapters.xraygpt import XrayGPTAdapter

    src, dst, _ = xray
    vit = read_state_dict(src / "eva_vit_g.pth")
    qf = read_state_dict(src / "blip2_pretrained_flant5xxl.pth")
    proj = read_state_dict(src / "xraygpt_pretrained1.pth")
    llama = LlamaForCausalLM.from_pretrained(src / "Vicuna_Radiology_fp16").eval()
    adapter = XrayGPTAdapter(pretrained=str(dst), device="cpu", dtype="float32")
    pixels = torch.randn(
        2, 3, VISION["image"], VISION["image"], generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        ref_img = minigpt4_image_embeds(
            vit, qf, proj, pixels, VISION["layers"], VISION["heads"], QFORMER["heads"]
        )
        got_img = torch.stack([e.slot_embeds for e in adapter.encode_images(pixels)])
        assert torch.allclose(got_img, ref_img, atol=1e-5), (got_img - ref_img).abs().max()
        tok = adapter.tokenizer
        before = tok("<Img>", add_special_tokens=False)["input_ids"]
        after = tok("</Img> Is there effusion? yes", add_special_tokens=False)["input_ids"]
        ids_b = torch.tensor([[tok.bos_token_id, *before]])
        ids_a = torch.tensor([after])
        emb = llama.get_input_embeddings()
        ref = llama(inputs_embeds=torch.cat([emb(ids_b), ref_img[:1], emb(ids_a)], 1)).logits
        e = adapter.embed_tokens
        n = ids_b.shape[1] + ref_img.shape[1] + ids_a.shape[1]
        got, _ = adapter.lm_forward(
            torch.cat([e(ids_b), got_img[:1], e(ids_a)], 1),
            torch.ones(1, n, dtype=torch.long),
            torch.arange(n)[None],
        )
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_xraygpt_refuses_unexpected_and_missing_keys(xray, tmp_path):
    src, _, _ = xray
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    ckpt = read_state_dict(bad / "xraygpt_pretrained1.pth")
    torch.save(
        {"model": {**ckpt, "llama_proj_extra.weight": torch.zeros(2)}},
        bad / "xraygpt_pretrained1.pth",
    )
    with pytest.raises(ConversionError, match="llama_proj_extra.weight"):
        convert_xraygpt(bad, tmp_path / "out1", vit_depth=VISION["layers"], **HEADS)
    torch.save(
        {"model": {"llama_proj.weight": ckpt["llama_proj.weight"]}}, bad / "xraygpt_pretrained1.pth"
    )
    with pytest.raises(ConversionError, match="missing keys: language_projection.bias"):
        convert_xraygpt(bad, tmp_path / "out2", vit_depth=VISION["layers"], **HEADS)
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


# ----- LLaVA-Med -------------------------------------------------------------------------------
def _llava_reference(src, pixels, ids_before, ids_after, v0):
    """LLaVA's own path over the original tensors: CLIP hidden_states[-2][:, 1:] -> projector."""
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaForCausalLM,
        MistralForCausalLM,
    )

    state = read_state_dict(src)
    if v0:
        tower = CLIPVisionModel.from_pretrained(src / "clip").eval()
    else:
        pre = "model.vision_tower.vision_tower."
        cfg = CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=1,
            image_size=VISION["image"],
            patch_size=VISION["patch"],
            hidden_act="quick_gelu",
        )
        tower = CLIPVisionModel(cfg).eval()
        tower.load_state_dict({k[len(pre) :]: v for k, v in state.items() if k.startswith(pre)})
    feats = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    if v0:
        img = F.linear(feats, state["model.mm_projector.weight"], state["model.mm_projector.bias"])
    else:
        h = F.gelu(
            F.linear(
                feats, state["model.mm_projector.0.weight"], state["model.mm_projector.0.bias"]
            )
        )
        img = F.linear(h, state["model.mm_projector.2.weight"], state["model.mm_projector.2.bias"])
    lm_cls = LlamaForCausalLM if v0 else MistralForCausalLM
    raw = json.loads((src / "config.json").read_text())
    known = set(lm_cls.config_class().to_dict()) - {"model_type", "architectures"}
    lm = lm_cls(lm_cls.config_class(**{k: v for k, v in raw.items() if k in known})).eval()
    lm.load_state_dict(
        {
            k: v
            for k, v in state.items()
            if not k.startswith("model.mm_projector") and not k.startswith("model.vision_tower")
        },
        strict=True,
    )
    emb = lm.get_input_embeddings()
    return lm(inputs_embeds=torch.cat([emb(ids_before), img, emb(ids_after)], 1)).logits


@pytest.mark.parametrize("v0", [False, True], ids=["v1.5-mistral", "v0-llama"])
def test_llava_med_logits_match_original_layout_reference(llava, v0):
    from model_adapters.llava_med import LlavaMedAdapter, LlavaMedV15Adapter

    src, dst = (llava / "src0", llava / "dst0") if v0 else (llava / "src", llava / "dst")
    cls = LlavaMedAdapter if v0 else LlavaMedV15Adapter
    adapter = cls(pretrained=str(dst), device="cpu", dtype="float32")
    pixels = torch.randn(
        1, 3, VISION["image"], VISION["image"], generator=torch.Generator().manual_seed(2)
    )
    tok = adapter.tokenizer
    ids_b = torch.tensor(
        [[tok.bos_token_id, *tok("Is there effusion?\n", add_special_tokens=False)["input_ids"]]]
    )
    ids_a = torch.tensor([tok(" yes", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = _llava_reference(src, pixels, ids_b, ids_a, v0)
        img = adapter.encode_images(pixels)[0].slot_embeds[None]
        n = ids_b.shape[1] + img.shape[1] + ids_a.shape[1]
        e = adapter.embed_tokens
        got, _ = adapter.lm_forward(
            torch.cat([e(ids_b), img, e(ids_a)], 1),
            torch.ones(1, n, dtype=torch.long),
            torch.arange(n)[None],
        )
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_llava_med_refuses_strays_and_missing_tower(llava, tmp_path):
    import shutil

    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    shutil.copytree(llava / "src", bad)
    state = read_state_dict(bad)
    save_file(
        {**state, "model.mm_projector.5.weight": torch.zeros(2)}, str(bad / "model.safetensors")
    )
    with pytest.raises(ConversionError, match=r"model\.mm_projector\.5\.weight"):
        convert_llava_med(bad, tmp_path / "o1")
    state.pop("model.layers.1.mlp.up_proj.weight")
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ConversionError, match="model.language_model.layers.1.mlp.up_proj.weight"):
        convert_llava_med(bad, tmp_path / "o2")
    with pytest.raises(ConversionError, match="--vision-tower"):
        convert_llava_med(llava / "src0", tmp_path / "o3")


def test_convert_cli_writes_a_loadable_folder_and_reports_errors(llava, tmp_path, capsys):
    assert main(["convert", "llava-med", str(llava / "src"), str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "chexbench_conversion.json").is_file()
    assert "pretrained=" in capsys.readouterr().out
    assert main(["convert", "xraygpt", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "eva_vit_g.pth" in err and "Vicuna_Radiology_fp16" in err
