"""`--model hf` on tiny random models of nine transformers architectures, each written to disk
with its processor and a chat template shaped like the released one (tests/support/helpers/tiny_vlms.py).

The documented convention (docs/evaluate-any-model.md) is the reference, computed here with the
model's own processor and forward and nothing of CheXbench's: the processor's chat template for
one user turn (the images, then the question) with the generation prompt; `processor(text=prompt
+ " " + option, images=...)` with special tokens added as transformers' own
`apply_chat_template(tokenize=True)` adds them (unless the template wrote BOS); one full forward;
the option tokens' log-probs summed. The engine (prefix once, KV cache per option, left-padded
batches) must equal it to 1e-4 in float32, at batch sizes 1 and 3 with images of different sizes
in one batch (dynamic resolution, anyres tiling, M-RoPE grids), and must see the image.
"""

from __future__ import annotations

import pytest
import torch
import transformers as T
from helpers.tiny_vlms import ARCHITECTURES, NEED_IMAGE_ONLY_PROCESSOR, image, write_tiny_vlm
from PIL import Image

from model_adapters.engine import CheXbenchLM
from model_adapters.hf_auto import HFAutoAdapter

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [(52, 40), (40, 64), (70, 30), (84, 56)]  # (width, height): different token counts
ITEMS = [
    ("What is the view of this chest X-ray?", [" AP", " PA", " Lateral"], [0]),
    ("Is the heart enlarged?", [" Yes", " No", " maybe 10"], [3]),
    ("Is there effusion?", [" Yes", " No"], [1, 2]),
    (
        "Which findings are present in the heart and the lungs?",
        [" cardiomegaly, pleural effusion", " none"],
        [2],
    ),
]


class Req:
    def __init__(self, *args):
        self.args = args


def _images(seeds: list[int]) -> list[Image.Image]:
    return [image(s, SIZES[s]) for s in seeds]


def _requests() -> list[Req]:
    return [Req(q, o, {"visual": _images(seeds)}) for q, opts, seeds in ITEMS for o in opts]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request, tmp_path_factory):
    arch = request.param
    folder = write_tiny_vlm(arch, tmp_path_factory.mktemp(arch))
    return arch, folder


def _processor(arch: str, folder) -> object:
    """The model's own processor; for the three video-capable ones the released class without
    its video processor (torchvision is absent here), built here, not by the adapter."""
    if arch in NEED_IMAGE_ONLY_PROCESSOR:
        name = {
            "qwen2_vl": "Qwen2VLProcessor",
            "qwen2_5_vl": "Qwen2_5_VLProcessor",
            "llava_onevision": "LlavaOnevisionProcessor",
        }[arch]
        cls = getattr(T, name)
        return type(name, (cls,), {"attributes": ["image_processor", "tokenizer"]}).from_pretrained(
            folder, use_fast=False
        )
    return T.AutoProcessor.from_pretrained(folder, use_fast=False)


def _prompt(processor, question: str, n_images: int) -> tuple[str, bool]:
    messages = [
        {
            "role": "user",
            "content": [
                *({"type": "image"} for _ in range(n_images)),
                {"type": "text", "text": question},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = processor.tokenizer.bos_token  # processing_utils.apply_chat_template's rule
    return prompt, not (bos and prompt.startswith(bos))


def _reference(processor, model, question: str, option: str, images) -> tuple[float, int]:
    prompt, special = _prompt(processor, question, len(images))
    full = processor(
        text=[prompt + option], images=[images], return_tensors="pt", add_special_tokens=special
    )
    tok = processor.tokenizer
    ctx = tok(prompt, add_special_tokens=special).input_ids
    whole = tok(prompt + option, add_special_tokens=special).input_ids
    shared = next(k for k, (a, b) in enumerate(zip([*ctx, None], whole, strict=False)) if a != b)
    n = len(whole) - shared
    with torch.no_grad():
        logp = torch.log_softmax(model(**full).logits[0].float(), -1)
    ids = full["input_ids"][0]
    return float(logp[len(ids) - n - 1 : len(ids) - 1].gather(-1, ids[-n:, None]).sum()), n


@pytest.mark.parametrize("batch_size", [1, 3])
def test_scores_equal_the_models_own_forward(tiny, batch_size):
    arch, folder = tiny
    processor = _processor(arch, folder)
    model = T.AutoModelForImageTextToText.from_pretrained(folder).eval()
    adapter = HFAutoAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    assert (arch in NEED_IMAGE_ONLY_PROCESSOR) == bool(adapter.processor_note)
    lm = CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)
    kept = []  # logits positions each prefix pass returned (the rest: option passes)
    hook = adapter.model.register_forward_hook(
        lambda m, args, kwargs, out: (
            kept.append(out.logits.shape[1]) if kwargs.get("logits_to_keep") == 1 else None
        ),
        with_kwargs=True,
    )
    reqs = _requests()
    scores = lm.loglikelihood(reqs)
    hook.remove()
    if model._supports_logits_to_keep():  # the prefix pass asks for its last logits only
        assert kept == [1] * lm.stats.prefix_forwards, arch
    diffs = []
    for req, score in zip(reqs, scores, strict=True):
        q, o, extra = req.args
        ref, n = _reference(processor, model, q, o, extra["visual"])
        assert score.n_tokens == n, (arch, q, o)
        diffs.append(abs(score[0] - ref))
    assert max(diffs) <= 1e-4, (arch, max(diffs))
    # one prefix pass per batch, items of one image count batched together
    assert lm.stats.prefix_forwards == (4 if batch_size == 1 else 2)
    blank = lm.loglikelihood([Req(ITEMS[0][0], " AP", {"visual": [Image.new("RGB", SIZES[0])]})])
    assert abs(blank[0][0] - scores[0][0]) > 1e-3, f"{arch}: the image must reach the model"


def test_generation_is_the_models_own_generate(tiny):
    arch, folder = tiny
    processor = _processor(arch, folder)
    model = T.AutoModelForImageTextToText.from_pretrained(folder).eval()
    adapter = HFAutoAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    lm = CheXbenchLM(adapter, batch_size=2, show_progress=False)
    questions = [("Describe the findings.", [0]), ("Write the impression.", [3])]
    got = lm.generate_until(
        [
            (q, {"until": [], "max_gen_toks": 6}, {"visual": _images(seeds)})
            for q, seeds in questions
        ]
    )
    for (q, seeds), text in zip(questions, got, strict=True):
        prompt, special = _prompt(processor, q, len(seeds))
        inputs = processor(
            text=[prompt], images=[_images(seeds)], return_tensors="pt", add_special_tokens=special
        )
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
        new = out[0, inputs["input_ids"].shape[1] :]
        assert text == processor.tokenizer.decode(new, skip_special_tokens=True), arch


@pytest.mark.parametrize("batch_size", [1, 3])
def test_options_that_merge_with_the_prompts_last_token(tmp_path, batch_size):
    """A SentencePiece-style tokenizer that writes "ASSISTANT:" + " AP" as ..., ":▁", "AP": the
    prompt's last token is not a prefix token of prompt + option. The option's score then
    includes the merged token (the convention), the engine's prefix stopping before it."""
    folder = write_tiny_vlm("llava", tmp_path / "merging", tokenizer="merging")
    processor = _processor("llava", folder)
    model = T.AutoModelForImageTextToText.from_pretrained(folder).eval()
    tok = processor.tokenizer
    prompt, special = _prompt(processor, ITEMS[0][0], 1)
    ctx = tok(prompt, add_special_tokens=special).input_ids
    assert tok(prompt + " AP", add_special_tokens=special).input_ids[: len(ctx)] != ctx
    adapter = HFAutoAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    lm = CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)
    reqs = _requests()
    for req, score in zip(reqs, lm.loglikelihood(reqs), strict=True):
        ref, n = _reference(processor, model, *req.args[:2], req.args[2]["visual"])
        assert score.n_tokens == n and abs(score[0] - ref) <= 1e-4, req.args[:2]
