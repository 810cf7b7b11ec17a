"""RadFM on current torch + transformers: a 3D ViT, a perceiver (32 latents), a linear map into
a LLaMA's embedding space, and two learned `<image>`/`</image>` embeddings.

Each image becomes 32 embeddings that replace 32 placeholder tokens between `<image>` and
`</image>`. 2D images are volumes of depth 4 (the slice repeated), patched 32x32x4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaForCausalLM

from model_adapters.medflamingo.perceiver import PerceiverResampler, merge_heads, split_heads


@dataclass(frozen=True)
class RadFMVisionSpec:
    """The released model's values (RadFM `MyEmbedding`): 512x512x4 input, ViT-B-like tower."""

    image_size: int = 512
    frames: int = 512  # the position table covers up to 512 slices (128 depth patches)
    patch_size: int = 32
    frame_patch_size: int = 4
    dim: int = 768
    depth: int = 12
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 2048
    channels: int = 3
    num_latents: int = 32
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    input_depth: int = 4  # slices a 2D image is repeated to

    def to_dict(self) -> dict:
        return asdict(self)


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.attn_out = nn.Linear(heads * dim_head, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(self.attn_norm(x)).chunk(3, -1))
        x = self.attn_out(merge_heads(F.scaled_dot_product_attention(q, k, v))) + x
        return self.fc2(F.gelu(self.fc1(self.mlp_norm(x)))) + x


class ViT3D(nn.Module):
    """Volumes (N, C, H, W, D) -> patch tokens (N, h*w*d, dim) with learned 3D positions."""

    def __init__(self, spec: RadFMVisionSpec):
        super().__init__()
        self.spec = spec
        patch_dim = spec.channels * spec.patch_size**2 * spec.frame_patch_size
        self.patch_norm_in = nn.LayerNorm(patch_dim)
        self.patch_proj = nn.Linear(patch_dim, spec.dim)
        self.patch_norm_out = nn.LayerNorm(spec.dim)
        grid = spec.image_size // spec.patch_size
        self.pos_row = nn.Embedding(grid, spec.dim // 3)
        self.pos_col = nn.Embedding(grid, spec.dim // 3)
        self.pos_depth = nn.Embedding(spec.frames // spec.frame_patch_size, spec.dim // 3)
        self.layers = nn.ModuleList(
            ViTBlock(spec.dim, spec.heads, spec.dim_head, spec.mlp_dim) for _ in range(spec.depth)
        )

    def _positions(self, h: int, w: int, d: int, device: torch.device) -> torch.Tensor:
        # A coarser grid reads the table at strided rows (the last of each stride), as released.
        def rows(table: nn.Embedding, n: int) -> torch.Tensor:
            idx = (torch.arange(n, device=device) + 1) * (table.num_embeddings // n) - 1
            return table(idx)

        r, c, z = rows(self.pos_row, h), rows(self.pos_col, w), rows(self.pos_depth, d)
        grid = torch.cat(
            [
                r[:, None, None].expand(h, w, d, -1),
                c[None, :, None].expand(h, w, d, -1),
                z[None, None, :].expand(h, w, d, -1),
            ],
            dim=-1,
        )
        return grid.reshape(h * w * d, -1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        n, c, H, W, D = volume.shape
        p, pf = self.spec.patch_size, self.spec.frame_patch_size
        h, w, d = H // p, W // p, D // pf
        # (n, c, h, p, w, p, d, pf) -> tokens ordered (h, w, d), features ordered (p, p, pf, c)
        x = volume.reshape(n, c, h, p, w, p, d, pf).permute(0, 2, 4, 6, 3, 5, 7, 1)
        x = self.patch_norm_out(self.patch_proj(self.patch_norm_in(x.reshape(n, h * w * d, -1))))
        x = x + self._positions(h, w, d, volume.device)
        for block in self.layers:
            x = block(x)
        return x


class RadFMModel(nn.Module):
    def __init__(self, language_model: LlamaForCausalLM, spec: RadFMVisionSpec):
        super().__init__()
        self.spec = spec
        self.vision_encoder = ViT3D(spec)
        self.perceiver = PerceiverResampler(
            spec.dim,
            spec.perceiver_depth,
            spec.perceiver_dim_head,
            spec.perceiver_heads,
            spec.num_latents,
        )
        hidden = language_model.config.hidden_size
        self.image_proj = nn.Linear(spec.dim, hidden)
        self.figure_token_embeds = nn.Parameter(torch.zeros(2, hidden))  # <image>, </image>
        self.language_model = language_model

    @property
    def text_vocab(self) -> int:
        return self.language_model.get_input_embeddings().num_embeddings

    def encode_images(self, volumes: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W, D) -> (N, num_latents, hidden): the embeddings of the 32 image tokens."""
        return self.image_proj(self.perceiver(self.vision_encoder(volumes)))

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """LLaMA rows for text ids; ids text_vocab and text_vocab+1 are `<image>`, `</image>`."""
        table = torch.cat(
            [
                self.language_model.get_input_embeddings().weight,
                self.figure_token_embeds.to(self.language_model.dtype),
            ],
            dim=0,
        )
        return F.embedding(ids, table)
