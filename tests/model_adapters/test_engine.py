"""The image log-likelihood engine against an independent computation on the tiny CheXagent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model_adapters.chexagent import CheXagentAdapter
from model_adapters.engine import CheXbenchLM
from model_adapters.registry import build_lm


class Req:
    """The shape of an lm-eval Instance as the engine reads it."""

    def __init__(self, *args):
        self.args = args


def _images(seed: int, n: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)) for _ in range(n)]


IMGS = _images(0, 4)
ITEMS = [
    ("What is the view of this chest X-ray?", ["AP", "PA", "Lateral", "LL"], [IMGS[0]]),
    ("Does this chest X-ray contain pleural effusion? ünïcode", ["Yes", "No"], [IMGS[1], IMGS[2]]),
    (
        "Which findings are present?",
        ["cardiomegaly, pleural effusion, right-sided pneumothorax", "none", "atelectasis"],
        [IMGS[2]],
    ),
    ("Is the heart enlarged?", ["Yes", "No"], [IMGS[3]]),
    ("Which view?", ["Lateral", "PA", "AP"], [IMGS[0]]),
]


def _requests(items=ITEMS) -> list[Req]:
    return [Req(q, " " + o, {"visual": ims}) for q, opts, ims in items for o in opts]


def _independent(
    adapter: CheXagentAdapter, question: str, option: str, images
) -> tuple[float, int]:
    """One full BLIP-2 forward (transformers' own image-token splicing) per option, in
    CheXagent-8b's released layout: its processor tokenises the prompt WITH special tokens
    (so BOS leads the text) and its `generate` puts the image queries before all of it."""
    model, tok = adapter.model, adapter.tokenizer
    prompt = f" USER: <s>{question} ASSISTANT: <s>"
    ctx = tok(prompt, add_special_tokens=True).input_ids
    whole = tok(prompt + " " + option, add_special_tokens=True).input_ids
    assert ctx[0] == tok.bos_token_id and whole[: len(ctx)] == ctx
    cont = whole[len(ctx) :]
    ids = [model.config.image_token_index] * (model.config.num_query_tokens * len(images)) + whole
    pixels = torch.stack([adapter.preprocess(im.convert("RGB")) for im in images])
    with torch.no_grad():
        logits = model(pixel_values=pixels, input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    n = len(ids)
    target = torch.tensor(cont)
    return float(logp[n - len(cont) - 1 : n - 1].gather(-1, target[:, None]).sum()), len(cont)


@pytest.fixture(scope="module")
def smoke_adapter() -> CheXagentAdapter:
    return CheXagentAdapter(pretrained="smoke", dtype="float32", device="cpu")


@pytest.mark.parametrize("batch_size", [1, 8])
def test_engine_matches_independent_full_forward(smoke_adapter, batch_size):
    lm = CheXbenchLM(smoke_adapter, batch_size=batch_size, show_progress=False)
    scores = lm.loglikelihood(_requests())
    k = 0
    lengths = set()
    for q, opts, ims in ITEMS:
        for o in opts:
            ref, n = _independent(smoke_adapter, q, o, ims)
            assert scores[k].n_tokens == n
            assert abs(scores[k][0] - ref) < 1e-4, (q, o, scores[k][0], ref)
            lengths.add(n)
            k += 1
    assert len(lengths) >= 3, "options of different token lengths must be covered"


def test_one_vision_call_per_batch_and_each_image_once(smoke_adapter):
    lm = CheXbenchLM(smoke_adapter, batch_size=8, show_progress=False)
    lm.loglikelihood(_requests())
    # Batches never mix image counts (1-image and 2-image items): two batches, two calls.
    assert lm.stats.vision_calls == 2
    assert lm.stats.images_encoded == len(IMGS)  # IMGS[0] and IMGS[2] appear in two items
    assert lm.stats.prefix_forwards == 2 and lm.stats.option_forwards == 2
    lm.loglikelihood(_requests(ITEMS[:1]))  # an image seen before is not encoded again
    assert lm.stats.images_encoded == len(IMGS)
    assert lm.stats.boundary_fallbacks == 0


def test_scored_tokens_are_exactly_the_option_tokens(smoke_adapter):
    lm = CheXbenchLM(smoke_adapter, show_progress=False)
    prompt = " USER: <s>Which findings are present? ASSISTANT: <s>"
    for option in (" cardiomegaly, pleural effusion", " No", " Lateral"):
        ctx, cont = lm.split_continuation(prompt, option)
        assert smoke_adapter.tokenizer.decode(cont) == option
        assert ctx + cont == smoke_adapter.tokenize(prompt + option)


class _Planted(CheXagentAdapter):
    """The smoke model with its forward pass rigged to favour one token strongly."""

    planted_token: int = 0

    def lm_forward(
        self, inputs_embeds, attention_mask, position_ids, past_key_values=None, media=None
    ):
        logits, cache = super().lm_forward(
            inputs_embeds, attention_mask, position_ids, past_key_values, media
        )
        logits = logits.clone()
        logits[..., self.planted_token] += 30.0
        return logits, cache


def test_planted_answer_wins_and_sign_is_logprob():
    adapter = _Planted(pretrained="smoke", dtype="float32", device="cpu")
    option = " Lateral"
    ids = adapter.tokenize(" USER: <s>Which view? ASSISTANT: <s>" + option)
    ctx = adapter.tokenize(" USER: <s>Which view? ASSISTANT: <s>")
    assert len(ids) - len(ctx) == 1, "planting needs a single-token option"
    _Planted.planted_token = ids[-1]
    lm = CheXbenchLM(adapter, show_progress=False)
    options = [" AP", " PA", option]
    scores = lm.loglikelihood([Req("Which view?", o, {"visual": [IMGS[0]]}) for o in options])
    lls = [s[0] for s in scores]
    assert int(np.argmax(lls)) == 2
    assert lls[2] > -0.01, "a near-certain option must have log-prob near 0, not a large loss"
    assert all(ll <= 0 for ll in lls)
    assert scores[2][1] is True  # greedy


def test_changing_the_image_changes_the_scores(smoke_adapter):
    lm = CheXbenchLM(smoke_adapter, show_progress=False)
    q, opts = "What is the view of this chest X-ray?", [" AP", " PA"]
    a = lm.loglikelihood([Req(q, o, {"visual": [IMGS[0]]}) for o in opts])
    b = lm.loglikelihood([Req(q, o, {"visual": [IMGS[1]]}) for o in opts])
    blank = lm.loglikelihood([Req(q, o, {"visual": [Image.new("RGB", (72, 72))]}) for o in opts])
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) > 1e-4
    assert max(abs(x[0] - y[0]) for x, y in zip(a, blank, strict=True)) > 1e-4


def test_generation_is_greedy_deterministic_and_batch_invariant(smoke_adapter):
    reqs = [Req(q, {"until": [], "max_gen_toks": 6}, {"visual": ims}) for q, _, ims in ITEMS[:3]]
    one = CheXbenchLM(smoke_adapter, batch_size=1, show_progress=False).generate_until(reqs)
    many = CheXbenchLM(smoke_adapter, batch_size=8, show_progress=False).generate_until(reqs)
    assert one == many
    assert all(isinstance(t, str) and t for t in one)


def test_generation_stops_at_until_string(smoke_adapter):
    lm = CheXbenchLM(smoke_adapter, show_progress=False)
    free = lm.generate_until(
        [Req(ITEMS[0][0], {"until": [], "max_gen_toks": 8}, {"visual": ITEMS[0][2]})]
    )[0]
    stop = free[2:4]
    assert stop
    cut = lm.generate_until(
        [Req(ITEMS[0][0], {"until": [stop], "max_gen_toks": 8}, {"visual": ITEMS[0][2]})]
    )[0]
    assert cut == free[: free.index(stop)]


def test_generate_mode_multiple_choice_counts_unparseable(smoke_adapter):
    lm = CheXbenchLM(smoke_adapter, mc_mode="generate", show_progress=False)
    scores = lm.loglikelihood(_requests(ITEMS[:2]))
    # A random tiny model does not answer "(A)": every item must be flagged, none guessed.
    for s in scores:
        assert s.unparseable or s[0] in (0.0, float("-inf"))
    flagged = [s for s in scores if s.unparseable]
    assert all(s[0] == float("-inf") for s in flagged)


def test_registry_builds_and_rejects_unknown():
    lm = build_lm("chexagent", {"pretrained": "smoke", "batch_size": 3}, show_progress=False)
    assert lm.batch_size == 3
    with pytest.raises(LookupError, match="unknown model adapter"):
        build_lm("no-such-model", {})
    with pytest.raises(TypeError, match="unknown model args"):
        build_lm("chexagent", {"pretrained": "smoke", "nonsense": 1})


def test_remote_code_needs_explicit_flag(tmp_path):
    with pytest.raises(PermissionError, match="--trust-remote-code"):
        CheXagentAdapter(pretrained=str(tmp_path))


def test_the_generated_letter_is_parsed_as_the_official_code_parses_it():
    """Stanford-AIMI/CheXagent evaluation_chexbench (protocol-facts): choice_style A-Z,
    `re.findall(r"\\(([A-Z])\\)", response)`, the first match wins, a letter outside the options
    is wrong. Any letter A-Z is a parse, never a crash."""
    from model_adapters.engine import mc_choice

    assert mc_choice("The answer is (B), not (A).", 4) == 1
    assert mc_choice("(K) looks right", 4) == -1  # a letter past the options: wrong, no crash
    assert mc_choice("(Z)", 26) == 25
    assert mc_choice("(b) lower case is no match", 4) == -1
    assert mc_choice("no letter at all", 4) == -1
