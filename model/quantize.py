"""Codebook lookup, and quantization of motion statistics with the modulation they drive."""

from __future__ import annotations

import torch
from torch import nn


class Codebook(nn.Module):
    """A table of `size` vectors of `dim` entries (`embedding.weight`, as in the checkpoint)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / size, 1.0 / size)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: any shape of ints -> that shape x dim."""
        return self.embedding.weight[indices]

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """vectors: N x dim -> N indices of the closest entries in squared Euclidean distance.

        Distances are computed as |z|^2 + |e|^2 - 2 z.e, as the codebook was trained with, so that
        near-ties resolve the same way.
        """
        table = self.embedding.weight
        distances = (vectors**2).sum(dim=1, keepdim=True) + (table**2).sum(dim=1) - 2 * vectors @ table.t()
        return distances.argmin(dim=1)


def channel_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features: B x F x C x h x w -> (mean, unbiased variance) over C, each B x F x 1 x h x w."""
    return features.mean(dim=2, keepdim=True), features.var(dim=2, keepdim=True)


class MotionQuantizer(Codebook):
    """Quantizes the per-cell temporal profile of feature statistics and re-imposes it.

    For each latent cell (h, w) the window's F frames give a 2F-vector (mean_0, var_0, mean_1, ...) of the
    features' channel statistics; it is replaced by the nearest motion-codebook entry, and each frame's
    features are renormalised to that entry's mean and variance.
    """

    def __init__(self, size: int, frames: int) -> None:
        super().__init__(size, 2 * frames)
        with torch.no_grad():  # untrained entries still describe valid (positive) variances
            self.embedding.weight[:, 1::2].abs_()

    def quantize(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: B x F x C x h x w -> (indices B x h x w, statistics B x F x 2 x h x w)."""
        b, f, _, h, w = features.shape
        mean, var = channel_statistics(features)
        profile = torch.cat([mean, var], dim=2).reshape(b, 2 * f, h, w)  # frame-major (mean, var) pairs
        indices = self.nearest(profile.permute(0, 2, 3, 1).reshape(-1, 2 * f)).reshape(b, h, w)
        quantized = self.lookup(indices).permute(0, 3, 1, 2).reshape(b, f, 2, h, w)
        return indices, quantized

    @staticmethod
    def modulate(features: torch.Tensor, statistics: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Renormalise features (B x F x C x h x w) to the target statistics (B x F x 2 x h x w)."""
        mean, var = channel_statistics(features)
        target_mean, target_var = statistics.chunk(2, dim=2)
        return (features - mean) / torch.sqrt(var + eps) * torch.sqrt(target_var) + target_mean
