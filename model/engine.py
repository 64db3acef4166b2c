"""Inference beside the network: windows, encoder reuse, batching, precision and device.

Knows nothing of Ray, files or video: aligned face frames (uint8 BGR `T x 512 x 512 x 3`) in, restored
frames of the same shape out.

Upstream's schedule (reproduced by default): a clip is padded to a multiple of the window (8) by
repeating its last frame; windows start every `stride` (4) frames; the first window keeps all its outputs
and each later one keeps its last `stride`. The encoder is per frame, so each frame's latent is computed
once and shared by the windows that overlap on it; windows of several clips run in one forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from model.devices import device_for, effective_precision
from model.dptempcoh import DPTempCoh

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Window:
    """One forward pass over `frames` (indices into the clip; padding repeats the last frame). The outputs
    at the offsets in `keep` are written to the clip frames `frames[offset]`; the rest are discarded."""

    frames: tuple[int, ...]
    keep: tuple[int, ...]


def window_schedule(
    num_frames: int, window: int = 8, stride: int = 4, skip_padding: bool = True
) -> list[Window]:
    """Upstream's windows over a clip of `num_frames` frames; every frame is kept exactly once.

    With `skip_padding`, windows whose kept outputs would all be padding (upstream computes and then
    discards them) are left out.
    """
    if num_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..{window}, got {stride}")
    padded = max(window, math.ceil(num_frames / window) * window)
    windows = []
    for start in range(0, padded - window + 1, stride):
        first_kept = 0 if start == 0 else window - stride
        keep = tuple(offset for offset in range(first_kept, window) if start + offset < num_frames)
        if keep or not skip_padding:
            frames = tuple(min(start + offset, num_frames - 1) for offset in range(window))
            windows.append(Window(frames, keep))
    return windows


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks CUDA when available, else the CPU (model.devices)."""
    if isinstance(device, torch.device):
        return resolve_device(str(device))
    return torch.device(device_for(device))


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is fp32 on the CPU and bf16 on a GPU; fp16 needs a GPU (model.devices)."""
    return effective_precision(precision, device.type)


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 `N x S x S x 3` -> float `N x 3 x S x S` in [-1, 1], computed as upstream does."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    return (t / 255.0 - 0.5) / 0.5


def tensor_to_frames(t: torch.Tensor) -> np.ndarray:
    """float `N x 3 x S x S` -> uint8 `N x S x S x 3`: clamp to [-1, 1], scale, truncate (as upstream)."""
    scaled = (t.float().clamp(-1, 1) + 1) / 2 * 255.0
    return scaled.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


@dataclass
class _Clip:
    frames: np.ndarray
    output: np.ndarray
    latents: dict[int, torch.Tensor] = field(default_factory=dict)


class RestorationEngine:
    """Runs a DP-TempCoh network over clips of aligned faces.

    Args:
        model: the network, with weights loaded.
        device: "auto", "cpu", "cuda" or "cuda:N".
        precision: "auto" (fp32 on CPU, bf16 on GPU), "fp32", "bf16" or "fp16" (autocast; weights stay fp32).
        batch_windows: windows per forward pass (across clips).
        stride: frames between window starts (upstream: 4).
        channels_last: run convolutions in NHWC layout (faster with oneDNN and cuDNN; same function).
    """

    def __init__(
        self,
        model: DPTempCoh,
        device: str | torch.device | None = "auto",
        precision: str = "auto",
        batch_windows: int = 1,
        stride: int | None = None,
        channels_last: bool = True,
    ) -> None:
        if batch_windows < 1:
            raise ValueError("model.batch_windows must be at least 1")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = _with_conv_layout(model.to(self.device), self.memory_format).eval()
        self.window = model.config.frames
        self.stride = stride or self.window // 2
        self.side = model.config.img_size
        self.batch_windows = batch_windows

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def _check(self, frames: np.ndarray) -> None:
        expected = (self.side, self.side, 3)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise ValueError("frames must be a uint8 numpy array (BGR)")
        if frames.ndim != 4 or frames.shape[1:] != expected or frames.shape[0] < 1:
            raise ValueError(
                f"frames must be T x {self.side} x {self.side} x 3 with T >= 1, got {frames.shape}"
            )

    def to_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 BGR `N x S x S x 3` -> the network's input on this engine's device and layout."""
        return frames_to_tensor(frames, self.device).contiguous(memory_format=self.memory_format)

    def restore(self, frames: np.ndarray) -> np.ndarray:
        """frames: uint8 BGR `T x S x S x 3` -> restored frames, same shape."""
        return self.restore_many([frames])[0]

    def restore_many(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Restore several clips, batching windows across them. Returns one array per clip."""
        for frames in clips:
            self._check(frames)
        states = [_Clip(frames, np.empty_like(frames)) for frames in clips]
        jobs = [
            (state, window)
            for state in states
            for window in window_schedule(len(state.frames), self.window, self.stride)
        ]
        with torch.inference_mode(), self._autocast():
            for batch in _chunks(jobs, self.batch_windows):
                self._run(batch)
        return [state.output for state in states]

    def _run(self, batch: list[tuple[_Clip, Window]]) -> None:
        self._encode_missing(batch)
        latents = torch.stack(
            [torch.stack([state.latents[i] for i in window.frames]) for state, window in batch]
        )
        restored = self.model.restore_latents(latents).frames
        _require_finite(restored)
        for (state, window), frames in zip(batch, restored, strict=True):
            _write_kept(state.output, window, frames)
            first_needed = window.frames[0] + self.stride
            for index in [i for i in state.latents if i < first_needed]:
                del state.latents[index]  # later windows of this clip start past it

    def _encode_missing(self, batch: list[tuple[_Clip, Window]]) -> None:
        missing: dict[tuple[int, int], tuple[_Clip, int]] = {}
        for state, window in batch:
            for index in window.frames:
                if index not in state.latents:
                    missing[(id(state), index)] = (state, index)
        for chunk in _chunks(list(missing.values()), self.window):
            pixels = np.stack([state.frames[index] for state, index in chunk])
            encoded = self.model.encode(self.to_input(pixels))
            for (state, index), latent in zip(chunk, encoded, strict=True):
                state.latents[index] = latent

    def restore_naive(self, frames: np.ndarray) -> np.ndarray:
        """Upstream's schedule computed as upstream does: every window encodes all of its frames, one
        window per forward pass. The baseline for benchmarks and equivalence tests."""
        self._check(frames)
        output = np.empty_like(frames)
        with torch.inference_mode(), self._autocast():
            for window in window_schedule(len(frames), self.window, self.stride, skip_padding=False):
                pixels = self.to_input(frames[list(window.frames)])
                restored = self.model(pixels[None]).frames[0]
                _require_finite(restored)
                _write_kept(output, window, restored)
        return output


def _with_conv_layout(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Lay out the 2-D convolution weights in `memory_format` (Module.to refuses the 5-D ones)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=memory_format)
    return model


def _require_finite(restored: torch.Tensor) -> None:
    if not torch.isfinite(restored).all():
        raise FloatingPointError(
            "the network produced NaN or infinite values: the weights are not a trained DP-TempCoh "
            "checkpoint, or fp16 overflowed (try model.precision=bf16 or fp32)"
        )


def _write_kept(output: np.ndarray, window: Window, restored: torch.Tensor) -> None:
    """Write a window's kept outputs (restored: F x 3 x S x S) into the clip's output frames."""
    if window.keep:
        kept = tensor_to_frames(restored[list(window.keep)])
        output[[window.frames[offset] for offset in window.keep]] = kept


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
