"""RadFM: released `pytorch_model.bin` layout -> our modules, checked against a reference forward.

The reference is written here from the released code's structure and reads the ORIGINAL-layout
state dict directly: einops-order 3D patching, the strided 3D position table, pre-norm ViT
blocks, the lucidrains perceiver, and RadFM's embedding by one-hot matmul over
[text rows; figure rows; image tokens] with the image placeholder ids 32002+ (here vocab+2+),
into a stock HF LLaMA. Agreement to 1e-5 checks the key mapping and the splice position.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_radfm import SPEC, E, build_tiny
from PIL import Image

from model_adapters.engine import CheXbenchLM
from model_adapters.medflamingo.state_dict import CheckpointKeyError, convert_state_dict
from model_adapters.radfm import RadFMAdapter
from model_adapters.radfm.checkpoint import released_key_plan


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("radfm")
    state, *base = build_tiny(root)
    adapter = RadFMAdapter(pretrained=str(root), dtype="float32", device="cpu")
    return (root, state, adapter, *base)


def _images():
    a = Image.new("RGB", (70, 90), (20, 20, 20))
    a.paste((230, 230, 230), (10, 10, 40, 80))
    return a, Image.new("RGB", (90, 70), (180, 90, 40))


def test_every_released_key_is_mapped_aliased_or_dropped(bundle):
    _, state, adapter, _ = bundle
    conv = convert_state_dict(state, released_key_plan(adapter.model), "pytorch_model.bin")
    assert sorted(conv.dropped) == sorted(
        k
        for k in state
        if k.endswith("inv_freq")
        or k.startswith(
            (E + "bert", E + "transformer_decoder", E + "output_upscaling", E + "cls_head")
        )
    )
    assert len(conv.state_dict) == len(state) - len(conv.dropped) - 1  # - the tied alias
    native = adapter.model.state_dict()
    assert sorted(native) == sorted(conv.state_dict)
    for key, tensor in conv.state_dict.items():
        assert torch.equal(native[key], tensor), key


def test_unexpected_missing_and_untied_keys_are_refused(bundle):
    _, state, adapter, _ = bundle
    plan = released_key_plan(adapter.model)
    with pytest.raises(CheckpointKeyError, match="embedding_layer.mystery"):
        convert_state_dict(dict(state, **{E + "mystery": torch.zeros(1)}), plan, "x.bin")
    gone = E + "vision_encoder.transformer.layers.1.0.fn.to_qkv.weight"
    with pytest.raises(CheckpointKeyError, match=r"missing.*layers\.1\.0\.fn\.to_qkv"):
        convert_state_dict({k: v for k, v in state.items() if k != gone}, plan, "x.bin")
    untied = dict(state, **{E + "weight": state[E + "weight"] + 1})
    with pytest.raises(CheckpointKeyError, match="differ"):
        convert_state_dict(untied, plan, "x.bin")


# ----- the reference forward (original layout) ------------------------------------------------
def _ln(sd, p, x):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def _lin(sd, p, x, bias=True):
    return F.linear(x, sd[p + ".weight"], sd.get(p + ".bias") if bias else None)


def _mha(q, k, v, heads):
    q, k, v = (t.reshape(*t.shape[:-1], heads, -1).transpose(1, 2) for t in (q, k, v))
    attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
    return (attn @ v).transpose(1, 2).flatten(2)


def _ref_vision(sd, vol):
    v = E + "vision_encoder."
    b, c, H, W, D = vol.shape
    h, w, d = H // 32, W // 32, D // 4
    x = torch.stack(
        [
            vol[:, :, i * 32 : (i + 1) * 32, j * 32 : (j + 1) * 32, k * 4 : (k + 1) * 4]
            .permute(0, 2, 3, 4, 1)
            .reshape(b, -1)
            for i in range(h)
            for j in range(w)
            for k in range(d)
        ],
        dim=1,
    )
    x = _ln(
        sd,
        v + "to_patch_embedding.3",
        _lin(sd, v + "to_patch_embedding.2", _ln(sd, v + "to_patch_embedding.1", x)),
    )
    rows = sd[v + "pos_embedding.row_embed.weight"]
    cols = sd[v + "pos_embedding.col_embed.weight"]
    deps = sd[v + "pos_embedding.dep_embed.weight"]
    pos = torch.stack(
        [
            torch.cat(
                [
                    rows[(i + 1) * (len(rows) // h) - 1],
                    cols[(j + 1) * (len(cols) // w) - 1],
                    deps[(k + 1) * (len(deps) // d) - 1],
                ]
            )
            for i in range(h)
            for j in range(w)
            for k in range(d)
        ]
    )
    x = x + pos
    for i in range(SPEC["depth"]):
        p = f"{v}transformer.layers.{i}."
        q, k, val = _lin(sd, p + "0.fn.to_qkv", _ln(sd, p + "0.norm", x), False).chunk(3, -1)
        x = _lin(sd, p + "0.fn.to_out.0", _mha(q, k, val, SPEC["heads"])) + x
        y = F.gelu(_lin(sd, p + "1.fn.net.0", _ln(sd, p + "1.norm", x)))
        x = _lin(sd, p + "1.fn.net.3", y) + x
    return x


def _ref_perceiver(sd, x):
    p = E + "perceiver."
    lat = sd[p + "latents"].expand(x.shape[0], -1, -1)
    for i in range(SPEC["perceiver_depth"]):
        q = f"{p}layers.{i}."
        xm, ll = _ln(sd, q + "0.norm_media", x), _ln(sd, q + "0.norm_latents", lat)
        k, v = _lin(sd, q + "0.to_kv", torch.cat([xm, ll], 1), False).chunk(2, -1)
        out = _mha(_lin(sd, q + "0.to_q", ll, False), k, v, SPEC["perceiver_heads"])
        lat = _lin(sd, q + "0.to_out", out, False) + lat
        lat = (
            _lin(sd, q + "1.3", F.gelu(_lin(sd, q + "1.1", _ln(sd, q + "1.0", lat), False)), False)
            + lat
        )
    return _ln(sd, p + "norm", lat)


@torch.no_grad()
def _ref_logits(sd, llama, vols, ids):
    vision = _lin(sd, E + "fc", _ref_perceiver(sd, _ref_vision(sd, vols))).flatten(0, 1)
    table = torch.cat([sd[E + "weight"], sd[E + "figure_token_weight"], vision])
    embeds = F.one_hot(ids, table.shape[0]).float() @ table
    return llama(inputs_embeds=embeds).logits


def test_converted_model_matches_reference_forward(bundle):
    _, state, adapter, llama = bundle
    vocab = adapter.model.text_vocab
    a, b = _images()
    vols = torch.stack([adapter.preprocess(a), adapter.preprocess(b)])
    assert vols.shape == (2, 3, 64, 64, 4)
    text = adapter.tokenizer("Is there cardiomegaly? yes", add_special_tokens=False)["input_ids"]
    ids = [adapter.tokenizer.bos_token_id]
    for i in range(2):
        ids += [vocab] + list(range(vocab + 2 + 32 * i, vocab + 2 + 32 * (i + 1))) + [vocab + 1]
    ids = torch.tensor([ids + text])
    ref = _ref_logits(state, llama, vols, ids)
    encs = adapter.encode_images(vols)
    pieces = [
        adapter.embed_tokens(torch.tensor([[ids[0, 0].item(), vocab]]))[0],
        encs[0].slot_embeds,
        adapter.embed_tokens(torch.tensor([[vocab + 1, vocab]]))[0],
        encs[1].slot_embeds,
        adapter.embed_tokens(torch.tensor([[vocab + 1] + text]))[0],
    ]
    embeds = torch.cat(pieces)[None]
    ours, _ = adapter.lm_forward(
        embeds, torch.ones(embeds.shape[:2], dtype=torch.long), torch.arange(embeds.shape[1])[None]
    )
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0), (ours - ref).abs().max()
    # and the prompt the adapter builds (one image, as the official code) tokenises to these ids
    segs = adapter.prompt_segments("Is there cardiomegaly?", 1)
    assert segs[0].ids == (ids[0, 0].item(),) and adapter.tokenize(segs[1]) == [vocab]
    assert adapter.tokenize(segs[-1] + " yes") == [vocab + 1] + text


def test_preprocess_is_deterministic_resize_in_unit_range(bundle):
    adapter = bundle[2]
    a, _ = _images()
    x, y = adapter.preprocess(a), adapter.preprocess(a)
    assert torch.equal(x, y) and 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x[..., 0], x[..., 3])  # the slice repeated to depth 4


def test_engine_scores_equal_naive_full_forward(bundle):
    adapter = bundle[2]
    a, b = _images()
    items = [
        ("Is there cardiomegaly?", [" yes", " no"], [a]),
        ("Which view is this?", [" PA", " AP", " lateral view"], [b]),
        ("Compare the two images.", [" worse", " unchanged"], [a, b]),
    ]
    reqs = [(q, opt, {"visual": imgs}) for q, opts, imgs in items for opt in opts]
    lm = CheXbenchLM(adapter, batch_size=1, show_progress=False)
    scores = lm.loglikelihood(reqs)
    for (ctx, opt, extra), s in zip(reqs, scores, strict=True):
        naive = lm.score_naive(ctx, opt, extra["visual"])
        assert abs(s[0] - naive[0]) < 1e-4, (ctx, opt, s[0], naive[0])
        assert s.n_tokens == naive.n_tokens and s[0] < 0
    assert abs(lm.score_naive(items[0][0], " yes", [b])[0] - scores[0][0]) > 1e-4


def test_absent_weights_name_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"chaoyi-wu/RadFM.*pytorch_model\.bin"):
        RadFMAdapter(pretrained=str(tmp_path), device="cpu")
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="Language_files"):
        RadFMAdapter(pretrained=str(tmp_path), device="cpu")
