"""Loading the released CheXagent-8b through its own hub code (trust_remote_code).

Only reached after the user passed --trust-remote-code. The remote model is a BLIP-2-style
module (vision_model, qformer + query_tokens, language_projection, language_model), so it is
wrapped in the same structure our own checkpoints have and the adapter code path is shared.
This path needs the real weights and cannot be exercised offline.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from harness.errors import RemoteCodeRefused


class _RemoteAsBlip2(torch.nn.Module):
    def __init__(self, remote: torch.nn.Module):
        super().__init__()
        self.remote = remote
        self.config = SimpleNamespace(num_query_tokens=remote.config.num_query_tokens)
        self.language_model = remote.language_model

    def get_input_embeddings(self):
        return self.remote.get_input_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision = self.remote.vision_model(pixel_values=pixel_values, return_dict=True)[0]
        mask = torch.ones(vision.shape[:-1], dtype=torch.long, device=vision.device)
        queries = self.remote.query_tokens.expand(vision.shape[0], -1, -1)
        q = self.remote.qformer(
            query_embeds=queries,
            encoder_hidden_states=vision,
            encoder_attention_mask=mask,
            return_dict=True,
        )[0]
        return self.remote.language_projection(q)


def load_remote_chexagent(
    pretrained: str,
    dtype: torch.dtype,
    device: torch.device,
    device_map: str | None,
    revision: str | None,
    trust_remote_code: bool,
):
    from transformers import AutoModelForCausalLM, AutoProcessor

    from chexagent.modeling import ARCHS, CheXagentBundle

    if not trust_remote_code:  # the adapter asks first; this keeps the rule local too
        raise RemoteCodeRefused("CheXagent-8b's hub code runs only with --trust-remote-code")
    processor = AutoProcessor.from_pretrained(
        pretrained, trust_remote_code=trust_remote_code, revision=revision
    )
    remote = AutoModelForCausalLM.from_pretrained(
        pretrained,
        torch_dtype=dtype,
        trust_remote_code=trust_remote_code,
        revision=revision,
        device_map=device_map,
    )
    if device_map is None:
        remote.to(device)
    remote.eval()
    return CheXagentBundle(
        _RemoteAsBlip2(remote), processor.tokenizer, processor.image_processor, ARCHS["paper"]
    )
