"""`--model hf` on a tiny LLaVA written to disk with its processor and chat template: the
engine's cached-prefix scores equal the model's own forward of processor(prompt + option)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model_adapters.engine import CheXbenchLM
from model_adapters.hf_auto import HFAutoAdapter

TEMPLATE = ("{% for m in messages %}{% if m['role']=='user' %}USER: {% else %}ASSISTANT: {% endif %}"
            "{% for c in m['content'] %}{% if c['type']=='image' %}<image>\n"
            "{% elif c['type']=='text' %}{{ c['text'] }}{% endif %}{% endfor %}"
            "{% if m['role']=='user' %} {% else %}{{ eos_token }}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import transformers as T

    from chexagent.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer()
    tok.image_token = "<image>"
    image_proc = T.CLIPImageProcessor(size={"shortest_edge": 28},
                                      crop_size={"height": 28, "width": 28})
    processor = T.LlavaProcessor(image_processor=image_proc, tokenizer=tok, patch_size=14,
                                 vision_feature_select_strategy="default", chat_template=TEMPLATE,
                                 num_additional_image_tokens=1)
    config = T.LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 28, "patch_size": 14},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 32,
                     "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "pad_token_id": tok.pad_token_id},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-2)
    root = tmp_path_factory.mktemp("llava")
    processor.save_pretrained(root)
    T.LlavaForConditionalGeneration(config).save_pretrained(root)
    cfg = root / "tokenizer_config.json"  # a LLaMA tokenizer returns no token_type_ids
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()),
                               "model_input_names": ["input_ids", "attention_mask"]}))
    return root


ITEMS = [("What is the view of this chest X-ray?", [" AP", " PA", " Lateral"], 1),
         ("Is there effusion?", [" Yes", " No"], 2),
         ("Which findings are present in the heart and the lungs?",
          [" cardiomegaly, pleural effusion", " none"], 3)]


def _reference(folder, question: str, option: str, image: Image.Image) -> float:
    """The model's own processor and forward, one full pass, nothing of ours."""
    import transformers as T

    processor = T.AutoProcessor.from_pretrained(folder, use_fast=False)
    model = T.AutoModelForImageTextToText.from_pretrained(folder).eval()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)
    full = processor(text=prompt + option, images=[image], return_tensors="pt",
                     add_special_tokens=False)
    ctx = processor.tokenizer(prompt, add_special_tokens=False).input_ids
    n = len(processor.tokenizer(prompt + option, add_special_tokens=False).input_ids) - len(ctx)
    with torch.no_grad():
        logp = torch.log_softmax(model(**full).logits[0].float(), -1)
    ids = full["input_ids"][0]
    return float(logp[len(ids) - n - 1: len(ids) - 1].gather(-1, ids[-n:, None]).sum())


class Req:
    def __init__(self, *args):
        self.args = args


@pytest.mark.parametrize("batch_size", [1, 3])
def test_scores_equal_the_models_own_forward(folder, batch_size):
    adapter = HFAutoAdapter(pretrained=str(folder), device="cpu", dtype="float32")
    lm = CheXbenchLM(adapter, batch_size=batch_size, show_progress=False)
    reqs = [Req(q, o, {"visual": [_image(seed)]}) for q, opts, seed in ITEMS for o in opts]
    scores = lm.loglikelihood(reqs)
    for req, score in zip(reqs, scores, strict=True):
        q, o, extra = req.args
        assert abs(score[0] - _reference(folder, q, o, extra["visual"][0])) <= 1e-4, (q, o)
    assert lm.stats.prefix_forwards == -(-len(ITEMS) // batch_size)  # one prefix pass a batch
    blank = lm.loglikelihood([Req(ITEMS[0][0], " AP", {"visual": [Image.new("RGB", (40, 52))]})])
    assert abs(blank[0][0] - scores[0][0]) > 1e-4, "the image must reach the model"
