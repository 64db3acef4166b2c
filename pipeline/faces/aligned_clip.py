"""Aligned-clip mode: the input is already a face crop, so whole frames are the aligned faces."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces.align import FACE_SIZE


def frames_to_faces(frames: np.ndarray, face_size: int = FACE_SIZE) -> np.ndarray:
    """TxHxWx3 uint8 face-crop frames -> TxSxSx3 uint8 network inputs, no detection involved."""
    return np.stack([_resize(frame, face_size, face_size) for frame in frames])


def faces_to_frames(faces: np.ndarray, height: int, width: int) -> np.ndarray:
    """TxSxSx3 uint8 restored faces -> TxHxWx3 uint8 frames of the source clip's size."""
    return np.stack([_resize(face, height, width) for face in faces])


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image.copy()
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)
