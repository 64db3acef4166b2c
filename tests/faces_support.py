"""Helpers for the face tests: real footage and the offline RetinaFace mobile0.25 detector."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from shared_data import shared_missing

from pipeline.faces import FaceDetector, FaceSettings
from pipeline.media import probe, read_frames

MOBILE_WEIGHTS = "weights/retinaface_mobile0.25.pth"


def mobile_settings(shared_dir: Path, **overrides) -> FaceSettings:
    """Default FaceSettings with the fast detector and its weights read in place from shared/."""
    weights = shared_dir / MOBILE_WEIGHTS
    if not weights.is_file():
        shared_missing(f"detector weights {weights} are absent")
    return FaceSettings(detector="retinaface_mobile0.25", detector_weights=str(weights), **overrides)


@lru_cache(maxsize=1)
def _detector(weights: str) -> FaceDetector:
    return FaceDetector(name="retinaface_mobile0.25", weights=weights)


def mobile_detector(shared_dir: Path) -> FaceDetector:
    return _detector(mobile_settings(shared_dir).detector_weights)


def footage_paths(shared_dir: Path) -> list[Path]:
    paths = sorted((shared_dir / "footage").glob("*.mp4"))
    if not paths:
        shared_missing(f"no footage in {shared_dir / 'footage'}")
    return paths


def read_clip(path: Path, max_frames: int | None = None) -> np.ndarray:
    """TxHxWx3 uint8 RGB frames of a video file (its first max_frames frames)."""
    count = probe(path).frame_count
    return read_frames(path, 0, count if max_frames is None else min(count, max_frames))
