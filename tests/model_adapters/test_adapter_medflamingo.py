"""Med-Flamingo: released `model.pt` layout -> our modules, checked against a reference forward.

The reference is a second, straightforward forward written here that reads the ORIGINAL-layout
state dict directly (open-flamingo 0.0.2 names, lucidrains-style einsum attention, the 0.0.2
media-location algorithm with `attend_previous`), running the stock HF LLaMA layers one by one
with the cross-attention inserted by hand. Agreement to 1e-5 therefore checks the key mapping,
the hook placement (before every 4th layer) and our media-time rule at once.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_medflamingo import VIS, XATTN, build_tiny
from PIL import Image

from model_adapters.engine import CheXbenchLM
from model_adapters.medflamingo import MedFlamingoAdapter
from model_adapters.medflamingo.checkpoint import convert_open_clip_visual, released_key_plan
from model_adapters.medflamingo.modeling import FlamingoSpec
from model_adapters.medflamingo.state_dict import CheckpointKeyError, convert_state_dict


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("medflamingo")
    state, *base = build_tiny(root)
    adapter = MedFlamingoAdapter(pretrained=str(root), dtype="float32", device="cpu")
    return (root, state, adapter, *base)


def _images():
    a = Image.new("RGB", (40, 48), (30, 30, 30))
    a.paste((220, 220, 220), (5, 5, 25, 40))
    b = Image.new("RGB", (48, 40), (200, 60, 10))
    return a, b


# ---------------------------------------------------------------------------------------------
def test_every_released_key_is_mapped_aliased_or_dropped(bundle):
    _, state, adapter, _, _ = bundle
    plan = released_key_plan(adapter.model.language_model, FlamingoSpec())
    conv = convert_state_dict(state, plan, "model.pt")
    assert sorted(conv.dropped) == sorted(k for k in state if k.endswith("inv_freq"))
    aliases = [k for k in state if ".gated_cross_attn_layer." in k]
    assert len(conv.state_dict) == len(state) - len(conv.dropped) - len(aliases)
    native = adapter.model.state_dict()
    for key, tensor in conv.state_dict.items():
        assert torch.equal(native[key], tensor), key


def test_unexpected_missing_and_inconsistent_keys_are_refused(bundle):
    _, state, adapter, _, _ = bundle
    plan = released_key_plan(adapter.model.language_model, FlamingoSpec())
    extra = dict(state, **{"lang_encoder.mystery.weight": torch.zeros(1)})
    with pytest.raises(CheckpointKeyError, match="lang_encoder.mystery.weight"):
        convert_state_dict(extra, plan, "model.pt")
    missing = {k: v for k, v in state.items() if k != "perceiver.layers.2.0.to_kv.weight"}
    with pytest.raises(CheckpointKeyError, match=r"missing.*perceiver\.layers\.2\.0\.to_kv"):
        convert_state_dict(missing, plan, "model.pt")
    bad = dict(state)
    key = "lang_encoder.model.layers.3.gated_cross_attn_layer.attn_gate"
    bad[key] = bad[key] + 1
    with pytest.raises(CheckpointKeyError, match="differ"):
        convert_state_dict(bad, plan, "model.pt")


def test_open_clip_visual_names_map_onto_clip_vision_model(bundle):
    clip = bundle[4]
    hf = clip.state_dict()
    v = "vision_model."
    oc = {
        "vision_encoder.visual.class_embedding": hf[v + "embeddings.class_embedding"],
        "vision_encoder.visual.positional_embedding": hf[
            v + "embeddings.position_embedding.weight"
        ],
        "vision_encoder.visual.conv1.weight": hf[v + "embeddings.patch_embedding.weight"],
        "vision_encoder.visual.proj": torch.zeros(VIS, 8),
    }
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            oc[f"vision_encoder.visual.{a}.{p}"] = hf[f"{v}{b}.{p}"]
    for i in range(2):
        s, d = f"vision_encoder.visual.transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for p in ("weight", "bias"):
            oc[f"{s}attn.in_proj_{p}"] = torch.cat(
                [hf[f"{d}self_attn.{n}_proj.{p}"] for n in "qkv"]
            )
            for a, b in (
                ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"),
                ("attn.out_proj", "self_attn.out_proj"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ):
                oc[f"{s}{a}.{p}"] = hf[f"{d}{b}.{p}"]
    out = convert_open_clip_visual(oc)
    assert sorted(out) == sorted("vision_encoder." + k for k in hf)
    for k, t in hf.items():
        assert torch.equal(out["vision_encoder." + k], t), k


# ----- the reference forward (original layout, original algorithm) --------------------------
def _ln(sd, p, x):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps=1e-5)


def _attend(q, k, v, heads, mask=None):
    q, k, v = (t.reshape(*t.shape[:-1], heads, -1).transpose(-2, -3) for t in (q, k, v))
    sim = torch.einsum("...id,...jd->...ij", q * q.shape[-1] ** -0.5, k)
    if mask is not None:
        sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
    attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
    return attn, v


def _ref_perceiver(sd, x):
    lat = sd["perceiver.latents"].expand(x.shape[0], -1, -1)
    for i in range(6):
        p = f"perceiver.layers.{i}."
        xm, ln_lat = _ln(sd, p + "0.norm_media", x), _ln(sd, p + "0.norm_latents", lat)
        k, v = (torch.cat([xm, ln_lat], 1) @ sd[p + "0.to_kv.weight"].T).chunk(2, -1)
        attn, v = _attend(ln_lat @ sd[p + "0.to_q.weight"].T, k, v, 8)
        out = (attn @ v).transpose(1, 2).flatten(2)
        lat = out @ sd[p + "0.to_out.weight"].T + lat
        h = F.gelu(_ln(sd, p + "1.0", lat) @ sd[p + "1.1.weight"].T)
        lat = h @ sd[p + "1.3.weight"].T + lat
    return _ln(sd, "perceiver.norm", lat)


def _ref_xattn(sd, i, x, media, media_locations, attend_previous):
    p = f"lang_encoder.gated_cross_attn_layers.{i}."
    n_img, n = media.shape[1], media.shape[2]
    text_time = media_locations.long().cumsum(-1)
    if not attend_previous:
        text_time[~media_locations] += 1
        text_time[text_time > media_locations.sum(-1, keepdim=True)] = 0
    mask = text_time[:, None, :, None] == torch.arange(1, n_img + 1).repeat_interleave(n)
    k, v = (media.flatten(1, 2) @ sd[p + "attn.to_kv.weight"].T).chunk(2, -1)
    q = _ln(sd, p + "attn.norm", x) @ sd[p + "attn.to_q.weight"].T
    attn, v = _attend(q, k, v, 8, mask)
    attn = attn.masked_fill((text_time == 0)[:, None, :, None], 0.0)
    out = (attn @ v).transpose(1, 2).flatten(2) @ sd[p + "attn.to_out.weight"].T
    x = out * sd[p + "attn_gate"].tanh() + x
    ff = F.gelu(_ln(sd, p + "ff.0", x) @ sd[p + "ff.1.weight"].T) @ sd[p + "ff.3.weight"].T
    return ff * sd[p + "ff_gate"].tanh() + x


@torch.no_grad()
def _ref_logits(sd, llama, clip, pixels, ids, media_id, attend_previous):
    feats = clip(pixel_values=pixels).last_hidden_state[:, 1:]
    media = _ref_perceiver(sd, feats)[None]
    hidden = sd["lang_encoder.model.embed_tokens.weight"][ids]
    pos = torch.arange(ids.shape[1])[None]
    rope = llama.model.rotary_emb(hidden, pos)
    for i, layer in enumerate(llama.model.layers):
        if i in XATTN:
            hidden = _ref_xattn(sd, i, hidden, media, ids == media_id, attend_previous)
        hidden = layer(hidden, attention_mask=None, position_ids=pos, position_embeddings=rope)
    return llama.lm_head(llama.model.norm(hidden))


def _prompt_ids(adapter, question, option, n_images):
    tok = adapter.tokenizer
    ids = [tok.bos_token_id] + adapter.tokenize("You are a helpful medical assistant.")
    ids += [adapter.media_token_id] * n_images + adapter.tokenize(
        f"Question: {question} Answer: {option}"
    )
    return torch.tensor([ids])


@pytest.mark.parametrize("rule,attend_previous", [("released", False), ("preceding", True)])
def test_converted_model_matches_reference_forward(bundle, rule, attend_previous):
    _, state, adapter, llama, clip = bundle
    a, b = _images()
    pixels = torch.stack([adapter.preprocess(a), adapter.preprocess(b)])
    ids = _prompt_ids(adapter, "Is there cardiomegaly?", "yes", 2)
    adapter.model.media_attention = rule
    try:
        media = torch.stack([e.media for e in adapter.encode_images(pixels)])[None]
        ours, _ = adapter.lm_forward(
            adapter.embed_tokens(ids),
            torch.ones_like(ids),
            torch.arange(ids.shape[1])[None],
            None,
            media,
        )
    finally:
        adapter.model.media_attention = "released"
    ref = _ref_logits(state, llama, clip, pixels, ids, adapter.media_token_id, attend_previous)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0), (ours - ref).abs().max()
    # the cross-attention is live: dropping the images changes the logits
    no_img = _ref_logits(
        state, llama, clip, pixels[:1] * 0, ids, adapter.media_token_id, attend_previous
    )
    assert (no_img - ref).abs().max() > 1e-3


# ----- through the engine --------------------------------------------------------------------
def test_engine_scores_equal_naive_full_forward(bundle):
    adapter = bundle[2]
    a, b = _images()
    items = [
        ("Is there cardiomegaly?", [" yes", " no"], [a]),
        ("Which view is this?", [" PA", " AP", " lateral view"], [b]),
        ("Is there an effusion?", [" left pleural effusion", " none"], [b]),
    ]
    reqs = [(q, opt, {"visual": imgs}) for q, opts, imgs in items for opt in opts]
    lm = CheXbenchLM(adapter, batch_size=2, show_progress=False)
    scores = lm.loglikelihood(reqs)
    # two batches, and each unique image encoded once (b is shared by two items)
    assert lm.stats.images_encoded == 2 and lm.stats.prefix_forwards == 2
    for (ctx, opt, extra), s in zip(reqs, scores, strict=True):
        naive = lm.score_naive(ctx, opt, extra["visual"])
        assert abs(s[0] - naive[0]) < 1e-4, (ctx, opt, s[0], naive[0])
        assert s.n_tokens == naive.n_tokens and s[0] < 0
    swapped = lm.score_naive(items[0][0], " yes", [b])
    assert abs(swapped[0] - scores[0][0]) > 1e-4  # the image reaches the model
    text = lm.generate_until(
        [("Describe the image.", {"until": ["\n"], "max_gen_toks": 4}, {"visual": [a]})]
    )
    assert isinstance(text[0], str)


def test_absent_weights_name_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"med-flamingo/med-flamingo.*model\.pt"):
        MedFlamingoAdapter(pretrained=str(tmp_path), device="cpu")
    torch.save({}, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"LLaMA-7B.*llama-7b-hf"):
        MedFlamingoAdapter(pretrained=str(tmp_path), device="cpu")
