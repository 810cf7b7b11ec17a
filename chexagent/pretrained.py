"""Initialise a CheXagent model's parts from released pretrained checkpoints.

The paper does not train from scratch: the vision encoder starts as EVA-CLIP-g, the Q-Former as
BERT-base (self-attention and feed-forward; cross-attention and queries are new, as in
BLIP-2), the bridger is new and the LM is Mistral-7B. `build_model` only makes the
architecture, with random weights; this module fills its parts in.

Every mapping is strict: a source key with no place, a model weight with no source, or a size
that differs is an error naming them. A silent partial load would train a randomly
initialised tower while the run believes it started from pretrained weights.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertConfig,
    Blip2ForConditionalGeneration,
    Blip2VisionConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

from chexagent.modeling import CheXagentBundle
from chexagent.tokenizer import IMAGE_TOKEN
from harness.checkpoints import key_listing
from harness.errors import UserError

DEFAULT_HUB_IDS = {
    "vision": "Salesforce/blip2-opt-2.7b",
    "qformer": "bert-base-uncased",
    "lm": "mistralai/Mistral-7B-v0.1",
}
FLAGS = {"vision": "--init-vision", "qformer": "--init-qformer", "lm": "--init-lm"}
# What a hub id downloads: configs and safetensors weights only (no duplicate .bin copies).
_HUB_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json"]
_HUB_ID = re.compile(r"(?![.~])[\w.-]+(/[\w.-]+)?")
# Vision weights come from a full BLIP-2 checkpoint (under `vision_model.`) or a bare tower.
_VISION_PREFIX = {"blip-2": "vision_model.", "blip_2_vision_model": ""}
_VISION_SIZES = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "intermediate_size": "intermediate",
    "patch_size": "patch",
    "hidden_act": "act",
    "layer_norm_eps": "eps",
    "qkv_bias": "qkv_bias",
}
_QFORMER_SIZES = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "intermediate_size": "intermediate",
    "hidden_act": "act",
    "layer_norm_eps": "eps",
}
_LM_SIZES = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "intermediate_size": "intermediate",
}
# Q-Former layer key prefix -> the BERT layer key prefix it starts from (BLIP-2's init_Qformer:
# the query feed-forward `*_query` is a copy of BERT's feed-forward, like the text one).
_QFORMER_FROM_BERT = [
    ("attention.attention.", "attention.self."),
    ("attention.output.", "attention.output."),
    ("intermediate_query.", "intermediate."),
    ("output_query.", "output."),
    ("intermediate.", "intermediate."),
    ("output.", "output."),
]
# BERT weights the Q-Former has no place for: the MLM / NSP heads, the pooler and token types
# (BLIP-2's Q-Former has none), and the word / position embeddings, which belong to the
# Q-Former's text side (`Stage1Heads.embeddings`: see `init_text_embeddings`).
_BERT_UNUSED = re.compile(
    r"cls\.|pooler\.|embeddings\.(token_type_embeddings|word_embeddings|"
    r"position_embeddings)\.|embeddings\.position_ids$"
)


class PretrainedInitError(UserError, ValueError):
    """A checkpoint whose keys or sizes do not fit the part it should initialise."""


def init_from_pretrained(
    bundle: CheXagentBundle,
    *,
    vision: str | None = None,
    qformer: str | None = None,
    lm: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Fill the given parts of a freshly built bundle in place; returns what came from where.

    Each source is a hub id or a local folder. `trust_remote_code` only reaches the LM's
    loaders, and only when the caller asks: a checkpoint's own code never runs by default.
    On an error the bundle may be partly initialised: build a new one.
    """
    report: dict[str, Any] = {}
    if vision:
        report["vision_model"] = init_vision(bundle.model, vision)
    if qformer:
        report["qformer"] = init_qformer(bundle.model, qformer)
    if lm:
        report["language_model"] = init_language_model(
            bundle, lm, trust_remote_code=trust_remote_code
        )
    report["random_init"] = [
        part for part in ("vision_model", "qformer", "language_model") if part not in report
    ] + ["language_projection"]
    return report


# ----- vision ------------------------------------------------------------------------------
def init_vision(model: Blip2ForConditionalGeneration, source: str) -> dict[str, Any]:
    """The ViT of a transformers BLIP-2 checkpoint (or a bare `Blip2VisionModel`), at the
    model's image size: position embeddings are resized when the grids differ (224 -> 448)."""
    folder = _folder(source, "vision", weights=False)  # sizes are checked before any download
    model_type = _model_type(folder, "vision")
    if model_type not in _VISION_PREFIX:
        raise PretrainedInitError(
            f"{FLAGS['vision']} {source}: config model_type {model_type!r} is neither a BLIP-2 "
            f"checkpoint nor a Blip2VisionModel (expected one of {sorted(_VISION_PREFIX)})"
        )
    _check_sizes(
        "vision",
        source,
        Blip2VisionConfig.from_pretrained(folder),
        model.config.vision_config,
        _VISION_SIZES,
    )
    prefix = _VISION_PREFIX[model_type]
    state = _read_tensors(_folder(source, "vision"), source, lambda k: k.startswith(prefix))
    target = model.vision_model
    values, _ = _take(state, {k: prefix + k for k in target.state_dict()}, lambda k: False, source)
    key, num_patches = "embeddings.position_embedding", target.embeddings.num_patches
    side, new_side = math.isqrt(values[key].shape[1] - 1), math.isqrt(num_patches)
    values[key] = interpolate_position_embedding(values[key], num_patches)
    _copy_into(target, values, (), source)
    return {
        "source": source,
        "tensors": len(values),
        "position_embedding": f"copied ({side}x{side} patch grid)"
        if side == new_side
        else f"{side}x{side} -> {new_side}x{new_side} patch grid, bicubic (class token kept)",
    }


def interpolate_position_embedding(pos: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + num_patches, D): the class token kept, the square patch grid
    resized bicubically, which is what transformers' `interpolate_pos_encoding` computes on the
    fly, so the loaded tower at the new size matches the source run with that flag."""
    side, new_side = math.isqrt(pos.shape[1] - 1), math.isqrt(num_patches)
    if side * side != pos.shape[1] - 1 or new_side * new_side != num_patches:
        raise PretrainedInitError(
            f"position embedding {tuple(pos.shape)} -> {num_patches} "
            "patches: only square patch grids can be resized"
        )
    if side == new_side:
        return pos
    dim = pos.shape[-1]
    grid = pos[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, num_patches, dim).to(pos.dtype)
    return torch.cat([pos[:, :1], grid], dim=1)


# ----- Q-Former ----------------------------------------------------------------------------
def init_qformer(model: Blip2ForConditionalGeneration, source: str) -> dict[str, Any]:
    """BERT onto the Q-Former as BLIP-2 did: embeddings LayerNorm -> `layernorm`, each layer's
    self-attention as is, BERT's feed-forward into both the query and the text feed-forward;
    cross-attention and the queries keep build_model's fresh init, as in BLIP-2."""
    qcfg = model.config.qformer_config
    _check_sizes(
        "qformer", source, BertConfig.from_pretrained(_bert_folder(source)), qcfg, _QFORMER_SIZES
    )
    state = _bert_tensors(source)
    target = model.qformer
    plan, new = {}, []
    for key in target.state_dict():
        bert_key = _bert_key(key)
        if bert_key is None:
            new.append(key)
        elif bert_key:
            plan[key] = bert_key
    values, dropped = _take(state, plan, lambda k: bool(_BERT_UNUSED.match(k)), source)
    _copy_into(target, values, new, source)
    fresh = sorted({f"qformer.{k.split('.crossattention.')[0]}.crossattention" for k in new})
    # The queries stay as build_model drew them: N(0, initializer_range), as in BLIP-2.
    return {
        "source": source,
        "tensors": len(values),
        "new": [*fresh, "query_tokens"],
        "dropped": dropped,
    }


def init_text_embeddings(embeddings: Blip2TextEmbeddings, source: str) -> dict[str, Any]:
    """BERT's word and position embeddings into the Q-Former's text embeddings (stage 1).

    Only meaningful when the captions are tokenised with that BERT's tokenizer, as in BLIP-2;
    the stage-1 trainer tokenises them with the LM's tokenizer, so it does not call this."""
    _bert_folder(source)  # refuses a non-BERT checkpoint before reading weights
    state = _bert_tensors(source)
    plan = {
        "word_embeddings.weight": "embeddings.word_embeddings.weight",
        "position_embeddings.weight": "embeddings.position_embeddings.weight",
    }
    values, _ = _take(state, plan, lambda k: True, source)
    _copy_into(embeddings, values, (), source)
    return {"source": source, "tensors": len(values)}


def _bert_key(key: str) -> str | None:
    """The BERT key a Q-Former key starts from; None: newly initialised (cross-attention);
    "": no rule (left unplanned, so `_copy_into` names it)."""
    if key.startswith("layernorm."):
        return "embeddings.LayerNorm." + key.removeprefix("layernorm.")
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", key)
    if not m:
        return ""
    layer, rest = m.groups()
    if rest.startswith("crossattention."):
        return None
    for ours, bert in _QFORMER_FROM_BERT:
        if rest.startswith(ours):
            return f"encoder.layer.{layer}.{bert}{rest.removeprefix(ours)}"
    return ""


def _bert_folder(source: str) -> Path:
    """The folder holding the BERT config (weights not fetched yet), checked to be BERT."""
    folder = _folder(source, "qformer", weights=False)
    model_type = _model_type(folder, "qformer")
    if model_type != "bert":
        raise PretrainedInitError(
            f"{FLAGS['qformer']} {source}: config model_type {model_type!r} is not 'bert'"
        )
    return folder


def _bert_tensors(source: str) -> dict[str, torch.Tensor]:
    """BertModel key names whatever the head: the `bert.` prefix of BertForMaskedLM /
    BertForPreTraining dropped and TF-era LayerNorm gamma/beta renamed, as transformers does
    when it loads them (bert-base-uncased itself uses gamma/beta)."""
    out = {}
    for key, value in _read_tensors(_folder(source, "qformer"), source, lambda k: True).items():
        key = key.removeprefix("bert.")
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        out[key] = value
    return out


# ----- language model ------------------------------------------------------------------------
def init_language_model(
    bundle: CheXagentBundle, source: str, trust_remote_code: bool = False
) -> dict[str, Any]:
    """The causal LM and its tokenizer, plus `<image>`, replacing the bundle's LM and tokenizer.

    The LM module is replaced rather than copied into, so that its own config (rope theta,
    sliding window, norm eps) comes with it; sizes must match the architecture."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    remote = {"trust_remote_code": trust_remote_code}
    config = _load("lm", AutoConfig, source, **remote)
    _check_sizes("lm", source, config, bundle.model.config.text_config, _LM_SIZES)
    tokenizer = _load("lm", AutoTokenizer, source, **remote)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise PretrainedInitError(
            f"{FLAGS['lm']} {source}: needs a fast tokenizer "
            f"(tokenizer.json), got {type(tokenizer).__name__}"
        )
    lm, info = _load(
        "lm",
        AutoModelForCausalLM,
        source,
        dtype=bundle.model.dtype,
        output_loading_info=True,
        **remote,
    )
    problems = [
        f"{kind.replace('_', ' ')}: {key_listing(map(str, info[kind]))}"
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
        if info.get(kind)
    ]
    if problems:
        raise PretrainedInitError(
            f"{FLAGS['lm']} {source}: the checkpoint does not match its "
            "own config; " + "; ".join(problems)
        )
    notes = {}
    if tokenizer.pad_token is None:  # Mistral has none; batches pad (masked) with <unk>
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        notes["pad_token"] = f"{tokenizer.pad_token} (the tokenizer had none)"
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": [IMAGE_TOKEN]}, replace_additional_special_tokens=False
    )
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    lm.config.vocab_size = lm.get_input_embeddings().num_embeddings
    lm.config.pad_token_id = tokenizer.pad_token_id
    lm.to(bundle.model.device).eval()
    bundle.model.language_model = lm
    bundle.model.config.text_config = lm.config
    bundle.model.config.image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    bundle.tokenizer = tokenizer
    bundle.arch = replace(bundle.arch, vocab_size=lm.config.vocab_size)
    return {
        "source": source,
        "tensors": len(lm.state_dict()),
        "added_tokens": [IMAGE_TOKEN] if added else [],
        **notes,
        "vocab_size": lm.config.vocab_size,
        "image_token_index": bundle.model.config.image_token_index,
    }


# ----- shared chores ---------------------------------------------------------------------------
def _missing_message(part: str, source: str, exc: Exception) -> str:
    hub_id = source if _HUB_ID.fullmatch(source) else DEFAULT_HUB_IDS[part]
    local = f"models/{hub_id.split('/')[-1]}"
    reason = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"{FLAGS[part]} {source}: not a local folder, and not loadable from the Hugging "
        f"Face hub ({exc.__class__.__name__}: {reason}). Download it while online "
        f"(`huggingface-cli download {hub_id} --local-dir {local}`) and pass "
        f"{FLAGS[part]} {local}."
    )


def _load(part: str, loader: Any, source: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(source)`, turning "not there" into a download instruction."""
    from huggingface_hub.errors import HFValidationError

    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, HFValidationError) as exc:  # absent folder / offline / not a repo id
        raise FileNotFoundError(_missing_message(part, source, exc)) from exc


def _folder(source: str, part: str, weights: bool = True) -> Path:
    """A local folder as is; a hub id through the Hugging Face cache (downloaded if online),
    its config alone unless `weights`."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(source, allow_patterns=_HUB_PATTERNS if weights else ["config.json"])
        )
    except (OSError, ValueError) as exc:  # offline and not cached / no such repo / bad id
        raise FileNotFoundError(_missing_message(part, source, exc)) from exc


def _model_type(folder: Path, part: str) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{FLAGS[part]} {folder}: no config.json; expected a "
            "transformers checkpoint folder (save_pretrained layout)"
        )
    return json.loads(config.read_text()).get("model_type", "")


def _read_tensors(
    folder: Path, source: str, keep: Callable[[str], bool]
) -> dict[str, torch.Tensor]:
    """Only the wanted tensors: a BLIP-2 checkpoint is mostly LM, read for its vision tower."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:  # .bin / .pth checkpoints: the project's weights-only reader
        from harness.checkpoints import read_state_dict

        try:
            return {k: v for k, v in read_state_dict(folder).items() if keep(k)}
        except UserError as exc:
            raise PretrainedInitError(f"{source}: {exc}") from exc
    from safetensors import safe_open

    out = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if keep(key):
                    out[key] = handle.get_tensor(key)
    return out


def _sizes(config: PretrainedConfig, fields: dict[str, str]) -> dict[str, Any]:
    return {short: getattr(config, name, None) for name, short in fields.items()}


def _check_sizes(
    part: str, source: str, have: PretrainedConfig, want: PretrainedConfig, fields: dict[str, str]
) -> None:
    got, need = _sizes(have, fields), _sizes(want, fields)
    if got != need:
        raise PretrainedInitError(
            f"{FLAGS[part]} {source}: the checkpoint's sizes "
            f"({_show(got)}) do not match the model's ({_show(need)})"
        )


def _show(sizes: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


def _take(
    source: dict[str, torch.Tensor],
    plan: dict[str, str],
    unused: Callable[[str], bool],
    origin: str,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`plan` (model key -> source key) applied; every source key must be planned or a
    documented `unused` one, and every planned one present. Returns (values, dropped keys)."""
    wanted = set(plan.values())
    missing = sorted(wanted - source.keys())
    leftover = [k for k in source if k not in wanted]
    unexpected = sorted(k for k in leftover if not unused(k))
    problems = []
    if missing:
        problems.append(f"missing key(s): {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {key_listing(unexpected)}")
    if problems:
        raise PretrainedInitError(
            f"{origin}: does not match the expected layout; " + "; ".join(problems)
        )
    return {ours: source[theirs] for ours, theirs in plan.items()}, sorted(leftover)


def _copy_into(
    module: nn.Module, values: dict[str, torch.Tensor], new: Iterable[str], origin: str
) -> None:
    """Copy `values` into `module`'s weights; every weight is either given or listed as new
    (a key neither, e.g. after a transformers rename, is an error rather than left random)."""
    state = module.state_dict()
    unplanned = sorted(state.keys() - values.keys() - set(new))
    if unplanned:
        raise PretrainedInitError(f"{origin}: no source weights for {key_listing(unplanned)}")
    wrong = [
        f"{k} {tuple(v.shape)} vs the model's {tuple(state[k].shape)}"
        for k, v in values.items()
        if v.shape != state[k].shape
    ]
    if wrong:
        raise PretrainedInitError(f"{origin}: shape mismatch: {key_listing(wrong)}")
    with torch.no_grad():
        for key, value in values.items():
            state[key].copy_(value)
