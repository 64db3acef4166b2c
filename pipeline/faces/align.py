"""Alignment of faces to the FFHQ five-point template: affines and 512x512 crops."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.faces.track import Track

FACE_SIZE = 512

# facexlib's FFHQ template for 512x512 crops (facexlib.utils.face_restoration_helper.FaceRestoreHelper):
# eye, eye, nose tip, mouth corner, mouth corner, the first of each pair on the image's left.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)

# facexlib pads aligned crops with this gray (its BGR (135, 133, 132)), which the restoration
# networks trained on facexlib crops have seen where a face leaves the frame.
BORDER_RGB = (132, 133, 135)


@dataclass
class AlignedFaces:
    """The aligned crops of one track.

    Attributes:
        crops: TxSxSx3 uint8 faces warped to the template (S = face size, 512).
        affines: Tx2x3 float64 frame -> crop affines (the inverse pastes a crop back).
        frames: (T,) clip-relative frame index of each crop.
    """

    crops: np.ndarray
    affines: np.ndarray
    frames: np.ndarray


def face_template(face_size: int = FACE_SIZE) -> np.ndarray:
    """5x2 float32 template landmark positions in an SxS crop."""
    return FFHQ_TEMPLATE_512 * (face_size / 512.0)


def alignment_affine(landmarks: np.ndarray, face_size: int = FACE_SIZE) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, shift) taking 5x2 landmarks onto the template.

    Least-median-of-squares, as facexlib aligns, so one badly placed landmark does not tilt the crop.

    Returns:
        2x3 float64 affine from frame pixels to crop pixels.
    """
    source = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    affine, _ = cv2.estimateAffinePartial2D(source, face_template(face_size), method=cv2.LMEDS)
    if affine is None:
        raise ValueError(f"no similarity transform fits the landmarks {source.tolist()} (degenerate face)")
    return affine


def warp_face(frame: np.ndarray, affine: np.ndarray, face_size: int = FACE_SIZE) -> np.ndarray:
    """HxWx3 frame -> SxSx3 crop through a 2x3 frame -> crop affine (bilinear, gray outside the frame)."""
    return cv2.warpAffine(
        frame,
        affine,
        (face_size, face_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_RGB,
    )


def align_track(
    frames: np.ndarray | Sequence[np.ndarray],
    track: Track,
    face_size: int = FACE_SIZE,
    smoothed: bool = True,
) -> AlignedFaces:
    """Aligned crops of a track on every one of its frames.

    Arguments:
        frames: the clip's frames (TxHxWx3), indexed by the track's clip-relative frame indices.
        track: the face to crop.
        face_size: crop side S.
        smoothed: align on the smoothed landmarks (steadier crops) rather than the raw ones.
    """
    landmarks = track.smoothed_landmarks if smoothed else track.landmarks
    affines = np.stack([alignment_affine(points, face_size) for points in landmarks])
    pairs = zip(track.frames, affines, strict=True)
    crops = np.stack([warp_face(frames[frame], affine, face_size) for frame, affine in pairs])
    return AlignedFaces(crops=crops, affines=affines, frames=track.frames.copy())


def map_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """...x2 points -> ...x2 points through a 2x3 affine."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]
