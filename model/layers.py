"""Per-frame building blocks of the VQGAN encoder and generator.

Every module here works on a batch of independent images `Nx C x H x W`; nothing mixes frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """The VQGAN's normalisation: GroupNorm with eps 1e-6 and affine parameters."""
    return nn.GroupNorm(num_groups=min(groups, channels), num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, conv3x3) twice, 1x1 shortcut on a width change."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        if in_channels != out_channels:
            self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x C_in x H x W -> N x C_out x H x W."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.in_channels != self.out_channels:
            x = self.conv_out(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each image, with a residual."""

    def __init__(self, channels: int, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x C x H x W -> N x C x H x W."""
        n, c, h, w = x.shape
        normed = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:
            return conv(normed).reshape(n, 1, c, h * w).transpose(-1, -2)  # N x 1 x HW x C

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        attended = attended.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after zero-padding one pixel on the right and bottom."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """VQGAN encoder: an image `N x 3 x S x S` to a latent `N x emb_dim x S/2^(L-1) x S/2^(L-1)`.

    `blocks` is a flat list (conv, residual/attention/downsample stages, middle, norm, conv) so that
    parameter names match the official checkpoint (`encoder.blocks.<i>.*`).
    """

    def __init__(
        self,
        nf: int,
        emb_dim: int,
        ch_mult: tuple[int, ...],
        res_blocks: int,
        resolution: int,
        attn_resolutions: tuple[int, ...],
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, nf, kernel_size=3, padding=1)]
        in_mult = (1, *ch_mult)
        current = resolution
        channels = nf
        for level, mult in enumerate(ch_mult):
            channels = nf * in_mult[level]
            out_channels = nf * mult
            for _ in range(res_blocks):
                blocks.append(ResBlock(channels, out_channels, norm_groups))
                channels = out_channels
                if current in attn_resolutions:
                    blocks.append(AttnBlock(channels, norm_groups))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(channels))
                current //= 2
        blocks += [
            ResBlock(channels, channels, norm_groups),
            AttnBlock(channels, norm_groups),
            ResBlock(channels, channels, norm_groups),
            group_norm(channels, norm_groups),
            nn.Conv2d(channels, emb_dim, kernel_size=3, padding=1),
        ]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x 3 x S x S in [-1, 1] -> N x emb_dim x s x s."""
        for block in self.blocks:
            x = block(x)
        return x
