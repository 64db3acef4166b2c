"""The token transformer that predicts codebook indices, and the codebook cross-attention layers.

Tokens are batch-first, `B x L x C`, with `L = F*h*w` ordered frame-major then row-major.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PackedMultiheadAttention(nn.Module):
    """Multi-head attention with packed q/k/v input projections (the layout of `nn.MultiheadAttention`,
    so the checkpoint's `in_proj_weight` / `out_proj` load as they are), computed with
    `F.scaled_dot_product_attention`.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query: B x Lq x C, key/value: B x Lk x C -> B x Lq x C."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        batch, length, dim = query.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, -1, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(F.linear(query, w_q, b_q)), split(F.linear(key, w_k, b_k)), split(F.linear(value, w_v, b_v))
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class _PreNormLayer(nn.Module):
    """Shared parts of the two layers below: attention, then a GELU MLP, both pre-norm and residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.self_attn = PackedMultiheadAttention(dim, heads)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class SelfAttentionLayer(_PreNormLayer):
    """Self-attention with a positional embedding added to queries and keys (not values)."""

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: B x L x C, pos: L x C."""
        normed = self.norm1(x)
        with_pos = normed + pos
        return self._mlp(x + self.self_attn(with_pos, with_pos, normed))


class CrossAttentionLayer(_PreNormLayer):
    """Queries attend to a second token sequence; both are normalised by the same LayerNorm."""

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query: B x L x C, memory: B x L' x C -> B x L x C."""
        normed_memory = self.norm1(memory)
        return self._mlp(query + self.self_attn(self.norm1(query), normed_memory, normed_memory))
