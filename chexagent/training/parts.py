"""Which parameters each stage trains, stage 1's LoRA on the vision encoder, and its ITC/IC heads.

Everything not named in the stage's `trainable` list is frozen (requires_grad False, eval mode
so frozen dropout layers stay deterministic), which is what makes stage 2 leave the vision
encoder and the LM bit-identical.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import Blip2ForConditionalGeneration
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

from chexagent.forward import encode_images
from chexagent.training.config import StageConfig

LORA_TARGETS = ["qkv", "projection", "fc1", "fc2"]  # BLIP-2 ViT attention + MLP linears


class Stage1Heads(nn.Module):
    """BLIP-2's stage-1 pieces that are not part of the inference model: the Q-Former's text
    embeddings, the ITC projections and temperature, and the captioning (IC) head."""

    def __init__(
        self,
        model: Blip2ForConditionalGeneration,
        text_vocab: int | None = None,
        embed_dim: int = 256,
    ):
        """`text_vocab`: the caption tokenizer's size (BERT's 30522 for the paper config; the
        tiny tokenizer's ~1200 keeps the tiny heads small)."""
        super().__init__()
        qcfg = copy.deepcopy(model.config.qformer_config)
        qcfg.vocab_size = text_vocab or qcfg.vocab_size
        if not getattr(qcfg, "use_qformer_text_input", False):
            raise ValueError(
                "stage 1 needs a Q-Former built with qformer_text_input=True "
                "(build_model(..., qformer_text_input=True))"
            )
        self.embeddings = Blip2TextEmbeddings(qcfg)
        self.vision_proj = nn.Linear(qcfg.hidden_size, embed_dim)
        self.text_proj = nn.Linear(qcfg.hidden_size, embed_dim)
        self.log_temp = nn.Parameter(torch.tensor(0.07).log())
        self.caption_head = nn.Linear(qcfg.hidden_size, qcfg.vocab_size)


def apply_vision_lora(model: Blip2ForConditionalGeneration, rank: int, alpha: int) -> None:
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)
    inject_adapter_in_model(config, model.vision_model)


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.modules())


def merge_vision_lora(model: Blip2ForConditionalGeneration) -> None:
    """Fold the LoRA deltas into the ViT weights and drop the adapters, so the exported
    checkpoint is a plain BLIP-2 model (no peft needed to load it)."""
    for name, module in list(model.vision_model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = (
                model.vision_model.get_submodule(parent_name) if parent_name else model.vision_model
            )
            setattr(parent, child, module.get_base_layer())


def set_trainable(
    model: Blip2ForConditionalGeneration, heads: nn.Module | None, cfg: StageConfig
) -> list[nn.Parameter]:
    model.requires_grad_(False)
    model.eval()
    parts = set(cfg.trainable)
    if "language_model" in parts:
        model.language_model.requires_grad_(True).train()
    if "language_projection" in parts:
        model.language_projection.requires_grad_(True).train()
    if "qformer" in parts:
        model.qformer.requires_grad_(True).train()
    if "query_tokens" in parts:
        model.query_tokens.requires_grad_(True)
    if "vision_model" in parts:
        model.vision_model.requires_grad_(True).train()
    if "vision_lora" in parts:
        if not has_lora(model.vision_model):
            raise ValueError("vision_lora is trainable but no LoRA was applied")
        for name, param in model.vision_model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        model.vision_model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if heads is not None and "stage1_heads" in parts:
        heads.requires_grad_(True).train()
        params += list(heads.parameters())
    if not params:
        raise ValueError(f"stage config trains nothing: {cfg.trainable}")
    return params


def itc_ic_loss(
    model: Blip2ForConditionalGeneration,
    heads: Stage1Heads,
    pixel_values: torch.Tensor,
    text_ids: torch.Tensor,
    text_mask: torch.Tensor,
    itc_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Stage 1: image-text contrastive + image captioning through the Q-Former (BLIP-2/CoCa).

    ITC: the best-matching query per image against the text's first token, both directions;
    identical captions in a batch count as positives (frequent in label-derived captions).
    IC: the Q-Former's text positions decode the caption causally, seeing all queries.
    """
    image_embeds, query_out = encode_images(model, pixel_values)
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    bsz, n_query = image_embeds.shape[0], model.query_tokens.shape[1]
    queries = model.query_tokens.expand(bsz, -1, -1)
    image_feat = F.normalize(heads.vision_proj(query_out), dim=-1)  # B x Q x D
    text_out = model.qformer(
        query_embeds=heads.embeddings(input_ids=text_ids), query_length=0, attention_mask=text_mask
    ).last_hidden_state
    text_feat = F.normalize(heads.text_proj(text_out[:, 0]), dim=-1)  # B x D
    sim = torch.einsum("iqd,td->itq", image_feat, text_feat).max(-1).values
    sim = sim / heads.log_temp.exp().clamp(min=1e-3)
    same = (text_ids.unsqueeze(1) == text_ids.unsqueeze(0)).all(-1).float()
    targets = same / same.sum(-1, keepdim=True)
    itc = (
        torch.sum(-targets * F.log_softmax(sim, 1), 1).mean()
        + torch.sum(-targets * F.log_softmax(sim.t(), 1), 1).mean()
    ) / 2

    n_text = text_ids.shape[1]
    total = n_query + n_text
    mask = torch.zeros(bsz, total, total, device=text_ids.device)
    mask[:, :n_query, :n_query] = 1
    mask[:, n_query:, :n_query] = 1
    causal = torch.tril(torch.ones(n_text, n_text, device=text_ids.device))
    mask[:, n_query:, n_query:] = causal * text_mask[:, None, :]
    embeds = heads.embeddings(input_ids=text_ids, query_embeds=queries)
    dec = model.qformer(
        query_embeds=embeds,
        query_length=n_query,
        attention_mask=mask,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_mask,
    ).last_hidden_state[:, n_query:]
    logits = heads.caption_head(dec)[:, :-1]
    labels = text_ids[:, 1:].masked_fill(text_mask[:, 1:] == 0, -100)
    ic = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
    )
    return itc_weight * itc + ic, {"itc": float(itc.detach()), "ic": float(ic.detach())}
