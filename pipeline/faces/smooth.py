"""Temporal smoothing of the five landmarks along a track, and the jitter it removes."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

SAVGOL_POLYORDER = 2


def smooth_landmarks(landmarks: np.ndarray, method: str = "savgol", window: int = 9) -> np.ndarray:
    """Low-pass each landmark coordinate over time.

    Savitzky-Golay (a local quadratic fit) keeps the timing of real head motion; Gaussian smooths
    harder but lags turns a little. Tracks shorter than the window get the longest odd window that
    fits; tracks too short for any filter come back unchanged.

    Arguments:
        landmarks: Tx5x2 positions along one track, one row per consecutive frame.
        method: "savgol", "gaussian" or "none".
        window: filter length in frames; the Gaussian's sigma is window / 6.
    Returns:
        Tx5x2 float32 smoothed positions.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if method == "none":
        return landmarks.copy()
    if method == "savgol":
        fitting_window = _longest_odd_window(window, len(landmarks))
        if fitting_window <= SAVGOL_POLYORDER:
            return landmarks.copy()
        smoothed = savgol_filter(landmarks, fitting_window, SAVGOL_POLYORDER, axis=0, mode="interp")
        return smoothed.astype(np.float32)
    if method == "gaussian":
        if window < 2 or len(landmarks) < 2:
            return landmarks.copy()
        smoothed = gaussian_filter1d(landmarks, sigma=window / 6, axis=0, mode="nearest", radius=window // 2)
        return smoothed.astype(np.float32)
    raise ValueError(f"smoothing method {method!r}: use 'savgol', 'gaussian' or 'none'")


def _longest_odd_window(window: int, length: int) -> int:
    fitting = min(window, length)
    return fitting if fitting % 2 == 1 else fitting - 1


def template_space_motion(landmarks: np.ndarray, affines: np.ndarray) -> float:
    """Mean frame-to-frame landmark motion, in pixels of the aligned (template) crop.

    Both frames of each pair are mapped by the earlier frame's alignment affine, so the motion is
    measured at the scale the restoration network sees, whatever the face's size in the film.

    Arguments:
        landmarks: Tx5x2 positions along a track (T >= 2), in frame pixels.
        affines: Tx2x3 alignment affines (frame -> template crop) of those frames.
    Returns:
        the mean over frame pairs and landmarks of the displacement length.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if len(landmarks) < 2:
        raise ValueError("template_space_motion needs at least two frames")
    linear, offset = affines[:-1, :, :2], affines[:-1, :, 2]
    current = np.einsum("tij,tkj->tki", linear, landmarks[:-1]) + offset[:, None, :]
    following = np.einsum("tij,tkj->tki", linear, landmarks[1:]) + offset[:, None, :]
    return float(np.linalg.norm(following - current, axis=-1).mean())
