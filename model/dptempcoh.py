"""DP-TempCoh: temporally coherent face-video restoration (arXiv 2501.09960).

encoder (per frame) -> spatio-temporal token transformer -> codebook lookup -> motion-statistics
quantization and modulation -> codebook cross-attention -> temporal generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.layers import Encoder
from model.quantize import Codebook, MotionQuantizer
from model.temporal import TemporalGenerator
from model.transformer import CrossAttentionLayer, SelfAttentionLayer


@dataclass(frozen=True)
class DPTempCohConfig:
    """Sizes of one configuration of the network (see `model.registry` for the named ones)."""

    img_size: int = 512
    frames: int = 8
    nf: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4, 8)
    res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    emb_dim: int = 256
    codebook_size: int = 1024
    motion_codebook_size: int = 16384
    dim_embd: int = 512
    n_heads: int = 8
    n_layers: int = 9
    temporal_heads: int = 16
    temporal_head_dim: int = 88
    norm_groups: int = 32

    @property
    def latent_size(self) -> int:
        """Side of the latent grid: the image side halved once per level but the last."""
        return self.img_size // 2 ** (len(self.ch_mult) - 1)

    @property
    def tokens_per_frame(self) -> int:
        return self.latent_size**2


@dataclass
class RestorationOutput:
    """frames: B x F x 3 x S x S in about [-1, 1]; tokens: B x (F*h*w); motion_tokens: B x (h*w)."""

    frames: torch.Tensor
    tokens: torch.Tensor
    motion_tokens: torch.Tensor


class DPTempCoh(nn.Module):
    """The restoration network for windows of `config.frames` aligned 512x512 face frames.

    Inputs are BGR, scaled to [-1, 1], shaped `B x F x 3 x S x S`; outputs likewise.
    """

    input_format = "BGR"

    def __init__(self, config: DPTempCohConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        latent_cells = c.tokens_per_frame
        self.position_emb = nn.Parameter(torch.zeros(latent_cells, c.dim_embd))  # per-frame; unused
        self.st_position_emb = nn.Parameter(torch.zeros(c.frames * latent_cells, c.dim_embd))
        self.encoder = Encoder(
            c.nf, c.emb_dim, c.ch_mult, c.res_blocks, c.img_size, c.attn_resolutions, c.norm_groups
        )
        self.quantize = Codebook(c.codebook_size, c.emb_dim)
        self.motion_quantize = MotionQuantizer(c.motion_codebook_size, c.frames)
        self.generator = TemporalGenerator(
            c.nf,
            c.emb_dim,
            c.ch_mult,
            c.res_blocks,
            c.img_size,
            c.attn_resolutions,
            c.temporal_heads,
            c.temporal_head_dim,
            c.norm_groups,
        )
        self.feat_emb = nn.Linear(c.emb_dim, c.dim_embd)
        self.ft_layers = nn.ModuleList(
            SelfAttentionLayer(c.dim_embd, c.n_heads, 2 * c.dim_embd) for _ in range(c.n_layers)
        )
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(c.dim_embd), nn.Linear(c.dim_embd, c.codebook_size, bias=False)
        )
        self.bank_crossAtten = nn.ModuleList(
            CrossAttentionLayer(c.emb_dim, c.n_heads, 2 * c.dim_embd) for _ in range(c.n_layers // 2)
        )

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: N x 3 x S x S -> latents N x emb_dim x h x w. Frames are independent here."""
        return self.encoder(frames)

    def predict_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: B x F x emb_dim x h x w -> codebook indices B x (F*h*w), frame-major."""
        b, f, c, h, w = latents.shape
        tokens = self.feat_emb(latents.permute(0, 1, 3, 4, 2).reshape(b, f * h * w, c))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.st_position_emb)
        return self.idx_pred_layer(tokens).argmax(dim=-1)

    def decode(self, tokens: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: B x (F*h*w) -> (frames B x F x 3 x S x S, motion tokens B x (h*w))."""
        b = tokens.shape[0]
        side = self.config.latent_size
        quantized = self.quantize.lookup(tokens)  # B x FL x C
        features = quantized.reshape(b, num_frames, side, side, -1).permute(0, 1, 4, 2, 3)
        motion_tokens, statistics = self.motion_quantize.quantize(features)
        modulated = self.motion_quantize.modulate(features, statistics)
        memory = modulated.permute(0, 1, 3, 4, 2).reshape(b, num_frames * side * side, -1)
        for layer in self.bank_crossAtten:
            quantized = layer(quantized, memory)
        latent = quantized.reshape(b * num_frames, side, side, -1).permute(0, 3, 1, 2)
        frames = self.generator(latent, num_frames)
        return frames.reshape(b, num_frames, *frames.shape[1:]), motion_tokens.reshape(b, -1)

    def restore_latents(self, latents: torch.Tensor) -> RestorationOutput:
        """latents: B x F x emb_dim x h x w (from `encode`) -> restored window."""
        tokens = self.predict_tokens(latents)
        frames, motion_tokens = self.decode(tokens, latents.shape[1])
        return RestorationOutput(frames, tokens, motion_tokens)

    def forward(self, frames: torch.Tensor) -> RestorationOutput:
        """frames: B x F x 3 x S x S (BGR, [-1, 1]) -> restored window."""
        b, f = frames.shape[:2]
        latents = self.encode(frames.flatten(0, 1))
        return self.restore_latents(latents.reshape(b, f, *latents.shape[1:]))
