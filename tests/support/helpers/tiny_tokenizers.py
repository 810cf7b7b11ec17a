"""Tiny tokenizers that behave like the baselines' real ones where the protocol depends on it.

The golden protocol tests (tests/model_adapters/test_protocol_golden.py) rebuild each official
wrapper's input token by token, so a tiny model must tokenise the way its real family does:

- `llama_tokenizer`: LLaMA/Vicuna/Mistral's SentencePiece BPE as transformers' fast converter
  writes it (`LlamaConverter`, legacy: normalizer Prepend("▁") + Replace(" ", "▁"), no
  pre-tokenizer, byte fallback, digits split). So a piece gets a leading "▁", text after a
  special token gets one too ("<im_end> no" -> "<im_end>", "▁", "▁no"), " 10" is "▁", "1", "0",
  and ids 0/1/2 are <unk>/<s>/</s> with the 256 byte pieces next, as in LLaMA.
- `opt_tokenizer`: OPT's byte-level BPE (GPT-2 style, no prefix space) whose BOS is `</s>` (id 2,
  after <s>=0, <pad>=1), prepended by the tokenizer, as in `Salesforce/blip2-opt-2.7b`.

Trained on a small chest X-ray and prompt-template vocabulary; deterministic (same bytes every
run), so tiny models stay reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

# Words of the official templates, so that they tokenise into a few pieces as in real vocabularies.
TEMPLATE_WORDS = """You are a helpful medical assistant being provided with images question about
image and an answer Answer Question experienced Doctor give following scan ImageContent will be
able to see once I provide it you Please my questions chat between curious human artificial
intelligence gives detailed polite answers human's Human Assistant INST Img Picture system user
assistant Directly answer by choosing one option Options Given indication write structured CXR
""".split()
LLAMA_SPECIALS = ("<unk>", "<s>", "</s>")
OPT_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def _lines() -> list[str]:
    from chexagent.tokenizer import _corpus

    return _corpus() + [" ".join(TEMPLATE_WORDS)] * 3 + TEMPLATE_WORDS


def _train_llama_model(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """BPE pieces that never cross a word start ("▁") or join digits, as LLaMA's."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("▁", "merged_with_next"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(LLAMA_SPECIALS), show_progress=False
    )
    tok.train_from_iterator(_lines(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    # LLaMA's layout: the specials, then the 256 byte-fallback pieces, then the learned ones.
    pieces = [
        *LLAMA_SPECIALS,
        *(f"<0x{b:02X}>" for b in range(256)),
        *(p for p in model["vocab"] if p not in LLAMA_SPECIALS),
    ]
    return {p: i for i, p in enumerate(pieces)}, [tuple(m) for m in model["merges"]]


def llama_tokenizer(
    bos_token: str = "<s>",
    pad_token: str | None = None,
    added: Sequence[str] = (),
    special: Sequence[str] = (),
    vocab_size: int = 1200,
):
    """A LlamaTokenizerFast in the legacy layout transformers converts LLaMA checkpoints to.

    `bos_token` is what the tokenizer prepends (InstructBLIP's Vicuna config says `</s>`);
    `pad_token`, `added` (tokens a release adds, LLaVA's `<im_patch>`) and `special` (additional
    special tokens) take the ids after the base vocabulary, in that order.
    """
    from transformers import LlamaTokenizerFast

    vocab, merges = _train_llama_model(vocab_size)
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA_SPECIALS])
    out = LlamaTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
        padding_side="left",
    )
    if pad_token:
        out.add_special_tokens({"pad_token": pad_token})
    if added:
        out.add_tokens(list(added), special_tokens=True)
    if special:
        out.add_special_tokens({"additional_special_tokens": list(special)})
    return out


def opt_tokenizer(special: Sequence[str] = (), vocab_size: int = 1200):
    """OPT's byte-level BPE: `</s>` (id 2) is BOS and EOS and is prepended to every text."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(OPT_SPECIALS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_lines(), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", eos)]
    )
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="</s>",
        pad_token="<pad>",
        padding_side="left",
    )
    if special:
        out.add_special_tokens({"additional_special_tokens": list(special)})
    return out


def phi_tokenizer(special: Sequence[str] = (), vocab_size: int = 1200):
    """CheXagent-2's CodeGen/Phi byte-level BPE: `<|endoftext|>` is BOS, EOS and UNK, and no BOS
    is added (`add_bos_token=False`); `special` are its image/box tags."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_lines(), trainer=trainer)
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if special:
        out.add_special_tokens({"additional_special_tokens": list(special)})
    return out
