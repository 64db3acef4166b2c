"""Temporal stability of a face track, before and after restoration, measured on its aligned crops.

Face-video restoration lives or dies by temporal stability, so each restored track gets a few numbers
(catalog/tracks.parquet) that say whether restoration steadied its face or made it flicker:

    warp error        each crop warped onto the next with dense optical flow (OpenCV DIS), mean absolute
                      difference over the face: what motion does not explain (flicker, texture crawl)
    change            mean frame-to-frame absolute difference over the face (motion included)
    landmark jitter   mean frame-to-frame motion of the smoothed landmarks, in template pixels
    PSNR              how much restoration changed the face (restored vs input crop)

Flow is computed once, on small grey copies of the INPUT crops (FLOW_SIZE), and the same flows warp
both the input and the restored crops, so that before and after are measured against the same motion
(what the face did in the source) and restoration is never credited for smoothing its own motion away.
The faces stage measures the input (and hands the flows on, `pack_flows`), the restore stage the
restored crops. All pixel measures are on 0..255 grey levels, over the face ellipse (`face_mask`).
"""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from pipeline.faces.align import FACE_SIZE
from pipeline.packing import pack_arrays, unpack_arrays

FLOW_SIZE = 128
# the face in the FFHQ template of 512 (eyes at y~240, mouth at y~371): an ellipse from brow to chin
MASK_CENTRE, MASK_AXES = (256, 296), (136, 176)
STRETCH = 16  # frames in the least stable stretch (the flipbook's)


def face_mask(size: int = FLOW_SIZE) -> np.ndarray:
    """SxS bool: the face ellipse of the 512 template, scaled to S."""
    scale = size / FACE_SIZE
    mask = np.zeros((size, size), np.uint8)
    centre = tuple(round(value * scale) for value in MASK_CENTRE)
    axes = tuple(round(value * scale) for value in MASK_AXES)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def small_grey(crops: np.ndarray, size: int = FLOW_SIZE) -> np.ndarray:
    """TxSxSx3 uint8 RGB crops -> TxNxN float32 grey copies (N = `size`), what every measure reads."""
    grey = [cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) for crop in crops]
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in grey]).astype(
        np.float32)  # fmt: skip


def dense_flows(grey: np.ndarray) -> np.ndarray:
    """(T-1)xNxNx2 float32 flows: for each pixel of frame t+1, where it was in frame t (DIS, medium)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    frames = grey.astype(np.uint8)
    flows = [dis.calc(frames[t + 1], frames[t], None) for t in range(len(frames) - 1)]
    return np.stack(flows) if flows else np.zeros((0, *grey.shape[1:], 2), np.float32)


def warp_errors(grey: np.ndarray, flows: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(T-1,) mean |frame t warped onto frame t+1 - frame t+1| over the face mask, per pair."""
    mask = face_mask(grey.shape[1]) if mask is None else mask
    height, width = grey.shape[1:]
    grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).astype(np.float32)
    errors = np.empty(len(flows), np.float32)
    for t, flow in enumerate(flows):
        where = grid + flow.astype(np.float32)
        warped = cv2.remap(grey[t], where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        errors[t] = np.abs(warped - grey[t + 1])[mask].mean()
    return errors


def frame_changes(grey: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(T-1,) mean |frame t+1 - frame t| over the face mask, per pair."""
    mask = face_mask(grey.shape[1]) if mask is None else mask
    return np.abs(np.diff(grey, axis=0))[:, mask].mean(axis=1) if len(grey) > 1 else np.zeros(0, np.float32)


def landmark_jitter(landmarks: np.ndarray, affines: np.ndarray | None = None) -> float | None:
    """Mean frame-to-frame landmark motion (mean over the points), in template pixels.

    Args:
        landmarks: Tx5x2 positions (the smoothed ones, as the crops were aligned on).
        affines: Tx2x3 frame -> crop affines when `landmarks` are in frame pixels: each step t -> t+1 is
            measured through frame t's affine (a track's own scale, whatever its size in the frame);
            None: `landmarks` are in template pixels already.
    Returns None for fewer than two frames.
    """
    landmarks = np.asarray(landmarks, np.float64)
    if len(landmarks) < 2:
        return None
    steps = np.diff(landmarks, axis=0)
    if affines is not None:
        steps = np.einsum("tpj,tij->tpi", steps, np.asarray(affines, np.float64)[:-1, :, :2])
    return float(np.linalg.norm(steps, axis=-1).mean())


def measure_input(
    crops: np.ndarray, landmarks: np.ndarray | None = None, affines: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """A track's input crops (TxSxSx3 uint8 RGB) -> (before-metrics, flows).

    The metrics are the summary's `warp_error_before`, `change_before` and `landmark_jitter` (None
    where the track has one frame, or no landmarks: aligned mode); the flows ((T-1)xNxNx2 float16)
    are what `measure_restored` warps the restored crops with."""
    grey = small_grey(crops)
    flows = dense_flows(grey)
    metrics = {"warp_error_before": _mean(warp_errors(grey, flows)),
               "change_before": _mean(frame_changes(grey)),
               "landmark_jitter": landmark_jitter(landmarks, affines) if landmarks is not None else None}
    return metrics, flows.astype(np.float16)


def measure_restored(
    flows: np.ndarray, inputs: np.ndarray, restored: np.ndarray, first_frame: int = 0, stretch: int = STRETCH
) -> dict:
    """After-metrics of a track from its input flows and its input and restored crops (TxSxSx3 uint8).

    Returns the summary's `warp_error_after`, `change_after`, `psnr_restored`, `worst_frame` (the video
    frame, counted from `first_frame`, whose warp error after is the largest) and `worst_stretch_start`
    (first video frame of the `stretch` frames, fewer in a shorter track, whose summed warp error after
    is the largest)."""
    grey = small_grey(restored)
    errors = warp_errors(grey, flows)
    metrics = {"warp_error_after": _mean(errors), "change_after": _mean(frame_changes(grey)),
               "psnr_restored": psnr(inputs, restored),
               "worst_frame": None, "worst_stretch_start": None}  # fmt: skip
    if len(errors):
        pairs = min(stretch, len(restored)) - 1 or 1  # a stretch of N frames holds N-1 pairs
        sums = np.convolve(errors, np.ones(pairs), mode="valid")
        metrics["worst_frame"] = first_frame + int(np.argmax(errors)) + 1  # the frame the error shows on
        metrics["worst_stretch_start"] = first_frame + int(np.argmax(sums))
    return metrics


def psnr(inputs: np.ndarray, restored: np.ndarray) -> float:
    """PSNR (dB) of the restored crops against the inputs over the whole track (one MSE for all frames);
    identical crops give 100 dB instead of infinity."""
    # OpenCV's vectorised sum of squares, frame by frame: a hundred times numpy's float copies
    squared = sum(cv2.norm(a, b, cv2.NORM_L2SQR) for a, b in zip(inputs, restored, strict=True))
    mse = squared / max(inputs.size, 1)
    return 100.0 if mse <= 255.0**2 * 1e-10 else float(10 * np.log10(255.0**2 / mse))


def pack_flows(flows: Mapping[int, np.ndarray]) -> bytes:
    """track id -> flows, as packed arrays (pipeline.packing; b"" for none); float16 halves the bytes
    that ride in the clip's record, and the flows' sub-pixel error at that precision is far below a
    grey level."""
    return pack_arrays({f"flows_{track}": flow.astype(np.float16, copy=False)
                        for track, flow in flows.items()})  # fmt: skip


def unpack_flows(data: bytes) -> dict[int, np.ndarray]:
    """track id -> (T-1)xNxNx2 float16 flows, as `pack_flows` packed them (read-only)."""
    return {int(name.removeprefix("flows_")): flow for name, flow in unpack_arrays(data).items()}


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None
