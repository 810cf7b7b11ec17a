"""Running the CheXagent stack on a batch: images -> query embeddings spliced into the LM.

Uses the BLIP-2 model's own `get_image_features` (vision -> Q-Former -> bridger), then puts
one run of `num_query_tokens` embeddings per image where the `<image>` tokens sit, in order.
Samples may carry different numbers of images: `pixel_values` holds all images of the batch
in reading order, which is exactly the order `masked_scatter` fills the slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Blip2ForConditionalGeneration

from chexagent.prompting import IGNORE_INDEX


def encode_images(
    model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ViT patch tokens, Q-Former query outputs before the bridger), with gradients: the
    training objectives that read either (stage 1, the demo's vision warm-up) call this."""
    image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
    return image_embeds, read_patches(model, image_embeds)


def read_patches(model: Blip2ForConditionalGeneration, image_embeds: torch.Tensor) -> torch.Tensor:
    """The Q-Former's learned queries cross-attending to the ViT's patch tokens."""
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    return model.qformer(
        query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask
    ).last_hidden_state


@torch.no_grad()
def query_features(
    model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor
) -> torch.Tensor:
    """Q-Former outputs (before the bridger) for frozen-vision stages to cache per image."""
    return encode_images(model, pixel_values)[1]


def splice_image_embeddings(
    model: Blip2ForConditionalGeneration,
    input_ids: torch.Tensor,
    pixel_values: torch.Tensor | None,
    cached_queries: torch.Tensor | None = None,
) -> torch.Tensor:
    """LM input embeddings with the image slots filled by the bridger's outputs.

    `cached_queries` (from `query_features`) skips the frozen vision encoder and Q-Former;
    the result is the same as passing the pixels when those are in eval mode.
    """
    embeds = model.get_input_embeddings()(input_ids)
    slots = input_ids == model.config.image_token_index
    n_slots = int(slots.sum())
    if cached_queries is not None:
        image_embeds = model.language_projection(cached_queries.to(embeds.dtype))
    elif pixel_values is None or pixel_values.shape[0] == 0:
        if n_slots:
            raise ValueError(f"{n_slots} <image> tokens but no pixel_values")
        return embeds
    else:
        image_embeds = model.get_image_features(pixel_values.to(embeds.dtype))
    if image_embeds.shape[0] * image_embeds.shape[1] != n_slots:
        raise ValueError(
            f"{image_embeds.shape[0]} images x {image_embeds.shape[1]} query tokens do not match "
            f"{n_slots} <image> tokens in input_ids"
        )
    mask = slots.unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, image_embeds.to(embeds.dtype))


def lm_logits(
    model: Blip2ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor | None,
    cached_queries: torch.Tensor | None = None,
) -> torch.Tensor:
    embeds = splice_image_embeddings(model, input_ids, pixel_values, cached_queries)
    return model.language_model(inputs_embeds=embeds, attention_mask=attention_mask).logits


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of token t+1 given <= t over labels != IGNORE_INDEX."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (sum of scored-token log-probs, number of scored tokens)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    scored = target != IGNORE_INDEX
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * scored).sum(-1), scored.sum(-1)
