"""Blocks that mix information across the frames of a window, and the temporal generator.

Tensors travel as `(B*F) x C x H x W` (frames of a window adjacent) with the frame count `F` passed
alongside, as in the generator they are inserted into. Parameter names follow the official checkpoint,
whose temporal parts were built from the video blocks of Stable Video Diffusion (AlphaBlender,
TemporalResnetBlock, TransformerSpatioTemporalModel); this is our own implementation of the same
functions with video frames only (no image-only samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import AttnBlock, ResBlock, Upsample, group_norm


class AlphaBlender(nn.Module):
    """`a * spatial + (1 - a) * temporal` with a learned `a = sigmoid(mix_factor)`."""

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([alpha]))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal


class TemporalConvBlock(nn.Module):
    """Residual block of two (3, 1, 1) convolutions along time on `B x C x F x H x W`.

    GroupNorm here pools statistics over all frames of the window, not per frame.
    """

    def __init__(self, channels: int, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm1 = group_norm(channels, norm_groups)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        self.norm2 = group_norm(channels, norm_groups)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class TemporalResBlock(nn.Module):
    """A temporal residual block blended with its input: follows each spatial ResBlock of the generator."""

    def __init__(self, channels: int, norm_groups: int = 32) -> None:
        super().__init__()
        self.temporal_res_block = TemporalConvBlock(channels, norm_groups)
        self.time_mixer = AlphaBlender()

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B*F) x C x H x W -> same shape."""
        bf, c, h, w = x.shape
        video = x.reshape(bf // num_frames, num_frames, c, h, w).transpose(1, 2)  # B x C x F x H x W
        mixed = self.time_mixer(video, self.temporal_res_block(video))
        return mixed.transpose(1, 2).reshape(bf, c, h, w)


class MultiHeadAttention(nn.Module):
    """Bias-free q/k/v projections, scaled dot-product attention, biased output projection."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x L x dim -> N x L x dim (self-attention over L)."""
        n, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, length, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        return self.to_out[0](out.transpose(1, 2).reshape(n, length, -1))


class GEGLU(nn.Module):
    """Linear projection to twice the width, then `value * gelu(gate)`."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP with a 4x hidden width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class SpatialTransformerBlock(nn.Module):
    """Pre-norm self-attention over the H*W positions of each frame, then a GEGLU MLP."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = MultiHeadAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B*F) x HW x dim."""
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class TemporalTransformerBlock(nn.Module):
    """MLP, self-attention across the F frames at each position, MLP; all residual."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = FeedForward(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = MultiHeadAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B*F) x HW x dim -> same shape."""
        bf, length, dim = x.shape
        batch = bf // num_frames
        x = x.reshape(batch, num_frames, length, dim).transpose(1, 2).reshape(batch * length, num_frames, dim)
        x = x + self.ff_in(self.norm_in(x))
        x = x + self.attn1(self.norm1(x))
        x = x + self.ff(self.norm3(x))
        return x.reshape(batch, length, num_frames, dim).transpose(1, 2).reshape(bf, length, dim)


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """`len(positions) x dim` sinusoids, cosine half first; frequency i = max_period ** (-i / (dim / 2))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half
    angles = positions[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class FramePositionEmbedding(nn.Module):
    """Frame index -> sinusoid -> MLP (linear, SiLU, linear): added before temporal attention."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.linear_2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, num_frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """-> F x out_dim."""
        sinusoid = sinusoidal_embedding(torch.arange(num_frames, device=device), self.in_dim).to(dtype)
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class SpatioTemporalTransformer(nn.Module):
    """Spatial attention within frames and temporal attention across frames, blended, with a residual.

    Follows each attention block of the generator (at the 16x16 latent resolution).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, norm_groups: int = 32) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = group_norm(channels, norm_groups)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([SpatialTransformerBlock(inner, heads, head_dim)])
        self.temporal_transformer_blocks = nn.ModuleList([TemporalTransformerBlock(inner, heads, head_dim)])
        self.time_pos_embed = FramePositionEmbedding(channels, channels * 4, inner)
        self.time_mixer = AlphaBlender()
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B*F) x C x H x W -> same shape."""
        bf, c, h, w = x.shape
        hidden = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        hidden = self.proj_in(hidden)
        frame_emb = self.time_pos_embed(num_frames, x.device, hidden.dtype)
        frame_emb = frame_emb.repeat(bf // num_frames, 1)[:, None, :]  # (B*F) x 1 x inner
        for spatial, temporal in zip(self.transformer_blocks, self.temporal_transformer_blocks, strict=True):
            hidden = spatial(hidden)
            hidden = self.time_mixer(hidden, temporal(hidden + frame_emb, num_frames))
        hidden = self.proj_out(hidden)
        return x + hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2)


class TemporalGenerator(nn.Module):
    """VQGAN generator whose every ResBlock is followed by a TemporalResBlock and every AttnBlock by a
    SpatioTemporalTransformer: latent `(B*F) x emb_dim x s x s` to frames `(B*F) x 3 x S x S`.
    """

    def __init__(
        self,
        nf: int,
        emb_dim: int,
        ch_mult: tuple[int, ...],
        res_blocks: int,
        resolution: int,
        attn_resolutions: tuple[int, ...],
        temporal_heads: int,
        temporal_head_dim: int,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        channels = nf * ch_mult[-1]
        current = resolution // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, channels, kernel_size=3, padding=1)]
        blocks += [
            ResBlock(channels, channels, norm_groups),
            AttnBlock(channels, norm_groups),
            ResBlock(channels, channels, norm_groups),
        ]
        for level in reversed(range(len(ch_mult))):
            out_channels = nf * ch_mult[level]
            for _ in range(res_blocks):
                blocks.append(ResBlock(channels, out_channels, norm_groups))
                channels = out_channels
                if current in attn_resolutions:
                    blocks.append(AttnBlock(channels, norm_groups))
            if level != 0:
                blocks.append(Upsample(channels))
                current *= 2
        blocks += [group_norm(channels, norm_groups), nn.Conv2d(channels, 3, kernel_size=3, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.temporal_blocks = nn.ModuleList(
            TemporalResBlock(b.out_channels, norm_groups) for b in blocks if isinstance(b, ResBlock)
        )
        self.temporal_attens = nn.ModuleList(
            SpatioTemporalTransformer(b.proj_out.in_channels, temporal_heads, temporal_head_dim, norm_groups)
            for b in blocks
            if isinstance(b, AttnBlock)
        )

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (B*F) x emb_dim x s x s -> (B*F) x 3 x S x S."""
        temporal_blocks = iter(self.temporal_blocks)
        temporal_attens = iter(self.temporal_attens)
        for block in self.blocks:
            x = block(x)
            if isinstance(block, ResBlock):
                x = next(temporal_blocks)(x, num_frames)
            elif isinstance(block, AttnBlock):
                x = next(temporal_attens)(x, num_frames)
        return x
