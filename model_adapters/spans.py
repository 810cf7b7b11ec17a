"""Where the official CheXbench wrappers find an option's tokens, as reusable rules.

The official `get_logits` methods (Stanford-AIMI/CheXagent, evaluation_chexbench/models/) use
two rules, and they differ from "the tail after the prompt's own tokens" for some tokenizers:

- standalone ids, located at the end (BLIP-2 `blip2.py:43-47`: `tok(f" {ans}").input_ids[1:]`;
  InstructBLIP `instructblip.py:45-49`, XrayGPT `xraygpt.py:96-100`, LLaVA-Med
  `llavamed.py:98-102`: `tok(f"{ans}").input_ids[1:]`): the option tokenised on its own, BOS
  dropped, asserted equal to the last ids of the prompt, and those last positions scored. After
  LLaVA-Med's `<im_end>` a legacy LLaMA tokenizer writes " {option}" as "▁" + "▁option"; the
  standalone ids are "▁option", so the lone "▁" is context, not option.
- from the option's first character (Med-Flamingo `medflamingo.py:121-126`, RadFM
  `radfm.py:50-55`: `char_to_token(prompt.rfind(option))` to the end): the token holding the
  option's first character and everything after it. LLaMA writes " 10" as "▁", "1", "0"; the
  rule scores "1", "0" and leaves "▁" in the context.
"""

from __future__ import annotations

from typing import Any


def option_text(continuation: str) -> str:
    """The option as the official code holds it: lm-eval's continuation without the " " that
    joins it to the question (the official prompt is f"{question} {option}")."""
    return continuation[1:] if continuation.startswith(" ") else continuation


def trailing_standalone(
    whole: list[int], standalone: list[int]
) -> tuple[list[int], list[int]] | None:
    """(context, option): the last len(standalone) ids of `whole`, when they equal `standalone`
    (the official assert); None when they do not (the official run would have failed)."""
    n = len(standalone)
    if n == 0 or n > len(whole) or whole[-n:] != standalone:
        return None
    return whole[:-n], whole[-n:]


def from_first_char(
    tokenizer: Any, text: str, option: str, lead: str = ""
) -> tuple[list[int], list[int]] | None:
    """(context, option) of `text` (ending with `option`) split at the token that holds the
    option's first character, `char_to_token(text.rfind(option))`.

    `lead` is text the official string has just before `text` (a special token such as
    `<image>`) and that changes how `text` tokenises; it is tokenised along and dropped.
    Needs a fast tokenizer (character offsets). None when no token holds that character.
    """
    enc = tokenizer(lead + text, add_special_tokens=False)
    lead_ids = list(tokenizer(lead, add_special_tokens=False)["input_ids"]) if lead else []
    n_lead, ids = len(lead_ids), list(enc["input_ids"])
    if ids[:n_lead] != lead_ids:
        return None
    pos = text.rfind(option)
    start = enc.char_to_token(len(lead) + pos) if pos >= 0 else None
    if start is None or start < n_lead or start >= len(ids):
        return None
    return ids[n_lead:start], ids[start:]
