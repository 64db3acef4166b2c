"""Alignment of faces to the FFHQ five-point template: affines and 512x512 crops."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline import scratch
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


def warp_face(
    frame: np.ndarray, affine: np.ndarray, face_size: int = FACE_SIZE, out: np.ndarray | None = None
) -> np.ndarray:
    """HxWx3 frame -> SxSx3 crop through a 2x3 frame -> crop affine (bilinear, gray outside the frame);
    written into `out` (a contiguous SxSx3 uint8 array) when given."""
    return cv2.warpAffine(
        frame,
        affine,
        (face_size, face_size),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_RGB,
    )


def warp_face_i420(
    picture: np.ndarray, affine: np.ndarray, colour, face_size: int = FACE_SIZE, out: np.ndarray | None = None
) -> np.ndarray:
    """A decoded (H*3/2)xW I420 picture -> SxSx3 RGB crop through a 2x3 frame -> crop affine, without
    converting the frame to RGB: each plane is warped straight to the crop's size (the chroma planes
    through `chroma_affine`), then the crop's YUV is converted with the source's matrix and range
    (`colour`, a pipeline.media.Colour). Outside the frame: facexlib's gray.

    This is how the faces stage cuts crops: at 1080p the full frame's RGB conversion cost about as much
    as decoding it, and a crop costs about twice warp_face's. Against warp_face of the decoder's RGB
    frame, crops differ by about a level on average (rounding, and chroma interpolated once, by the
    warp, rather than upsampled and then warped). Written into `out` (SxSx3 uint8) when given."""
    from pipeline.media import i420_planes, yuv_to_rgb_matrix

    size, chroma = (face_size, face_size), chroma_affine(affine)
    y, u, v = i420_planes(picture)
    if _leaves_frame(affine, face_size, y.shape):
        # the frame's edge chroma samples cover its edge luma pixels (as the decoder's RGB repeats them),
        # the gray only what lies beyond
        u, v = (cv2.copyMakeBorder(plane, 1, 1, 1, 1, cv2.BORDER_REPLICATE) for plane in (u, v))
        chroma = chroma @ np.array([[1.0, 0, -1], [0, 1, -1], [0, 0, 1]])
    planes = [cv2.warpAffine(plane, plane_affine, size, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border)
              for plane, plane_affine, border in zip((y, u, v), (affine, chroma, chroma),
                                                     _border_yuv(colour), strict=True)]  # fmt: skip
    return cv2.transform(cv2.merge(planes), yuv_to_rgb_matrix(colour), dst=out)


def _leaves_frame(affine: np.ndarray, face_size: int, frame_shape: tuple[int, int]) -> bool:
    """Whether the crop's footprint in the frame comes within two pixels of its edge, or beyond."""
    corners = np.array([[0, 0], [face_size, 0], [0, face_size], [face_size, face_size]], np.float64)
    in_frame = map_points(corners, cv2.invertAffineTransform(np.asarray(affine, np.float64)))
    height, width = frame_shape
    return bool((in_frame.min(0) < 2).any() or (in_frame.max(0) > (width - 3, height - 3)).any())


# 4:2:0 chroma siting (MPEG-1/JPEG, centred): chroma sample (i, j) sits at the centre of its 2x2 luma
# pixels, luma (2i + 0.5, 2j + 0.5). Both directions below read it from here.
CHROMA_TO_LUMA = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
LUMA_TO_CHROMA = np.linalg.inv(CHROMA_TO_LUMA)


def chroma_affine(affine: np.ndarray) -> np.ndarray:
    """A frame -> crop affine of luma pixels as one from the frame's 4:2:0 chroma plane to the crop's
    luma pixels (what cutting a crop's chroma from a picture warps with)."""
    return np.asarray(affine, np.float64) @ CHROMA_TO_LUMA


def onto_chroma_affine(affine: np.ndarray) -> np.ndarray:
    """A crop -> frame affine of luma pixels as one from the crop onto the frame's 4:2:0 chroma samples
    (what pasting a crop's chroma into a picture warps with): `chroma_affine`'s other direction."""
    return LUMA_TO_CHROMA[:2] @ np.vstack([np.asarray(affine, np.float64), [0.0, 0.0, 1.0]])


@functools.lru_cache(maxsize=16)
def _border_yuv(colour) -> tuple[float, float, float]:
    """BORDER_RGB as Y, U and V values of the colour's matrix and range."""
    from pipeline.media import rgb_to_yuv_matrix

    return tuple(float(value) for value in rgb_to_yuv_matrix(colour) @ [*BORDER_RGB, 1.0])


def align_track(
    frames: np.ndarray | Sequence[np.ndarray],
    track: Track,
    face_size: int = FACE_SIZE,
    smoothed: bool = True,
    colour=None,
) -> AlignedFaces:
    """Aligned crops of a track on every one of its frames.

    Arguments:
        frames: the clip's frames (TxHxWx3 RGB), indexed by the track's clip-relative frame indices; or,
            with `colour`, its decoded I420 pictures (pipeline.media.read_pictures_with_preview).
        track: the face to crop.
        face_size: crop side S.
        smoothed: align on the smoothed landmarks (steadier crops) rather than the raw ones.
        colour: the pictures' pipeline.media.Colour when `frames` are I420 pictures.
    """
    landmarks = track.smoothed_landmarks if smoothed else track.landmarks
    affines = np.stack([alignment_affine(points, face_size) for points in landmarks])
    # each crop warped into its place, in memory kept from the last clip where a stage runs this
    crops = scratch.empty("crops", (len(affines), face_size, face_size, 3))
    for crop, frame, affine in zip(crops, track.frames, affines, strict=True):
        if colour is None:
            warp_face(frames[frame], affine, face_size, out=crop)
        else:
            warp_face_i420(frames[frame], affine, colour, face_size, out=crop)
    return AlignedFaces(crops=crops, affines=affines, frames=track.frames.copy())


def map_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """...x2 points -> ...x2 points through a 2x3 affine."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]
