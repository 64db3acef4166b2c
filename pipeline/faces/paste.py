"""Paste-back: restored aligned crops composited into their frame through feathered masks.

The feathered mask is made in the crop's own space (erosion and blur scale with the crop, so the seam
is equally soft for every face size) and warped into the frame with the crop: for the usual square
mask it is made once per crop size, and a frame costs two warps and one blend of the face's region.

Faces are pasted into RGB frames (`paste_faces`) or into decoded I420 pictures (`paste_faces_i420`,
what paste and encode do for 4:2:0 output): there the 512x512 crop is converted to the source's YUV
once, and its planes are warped onto the face's region (widened to even coordinates) and its chroma
samples, then blended plane by plane with the same mask (shrunk 2x by area for the chroma planes); the
rest of the picture stays as decoded.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.faces.align import onto_chroma_affine
from pipeline.media import i420_planes, rgb_to_yuv_matrix


@dataclass
class PastedFace:
    """A restored crop and where it goes.

    Attributes:
        crop: SxSx3 uint8 restored face, in the aligned (template) frame.
        affine: 2x3 frame -> crop affine the crop was aligned with.
        face_mask: optional SxS float32 in [0, 1] in crop space (a face-parsing mask) that limits the
            paste to the face itself; None pastes the whole feathered square. No parsing model is
            wired in yet: this is the hook for one.
    """

    crop: np.ndarray
    affine: np.ndarray
    face_mask: np.ndarray | None = None


def paste_faces(frame: np.ndarray, faces: Sequence[PastedFace]) -> np.ndarray:
    """Composite restored faces into a copy of a frame, later faces over earlier ones.

    Pixels outside every face's feathered mask keep their source values bit for bit.

    Arguments:
        frame: HxWx3 uint8 source frame.
        faces: the restored faces of this frame.
    Returns:
        HxWx3 uint8 frame with the faces pasted.
    """
    result = frame.copy()
    for face in faces:
        paste_face_into(result, face)
    return result


def paste_face_into(frame: np.ndarray, face: PastedFace) -> None:
    """Blend one restored face into `frame` in place; pixels where its mask is zero keep their values."""
    placement = _placement(face, frame.shape[:2])
    if placement is None:
        return
    (x0, y0, x1, y1), to_region = placement
    size = (x1 - x0, y1 - y0)
    # constant border: where a warp samples beyond the crop its mask is 0 (crop_space_mask), and a
    # constant border warps in half the time of a replicated one
    warped_face = cv2.warpAffine(face.crop, to_region, size, flags=cv2.INTER_LINEAR)
    mask = feathered_mask(face, to_region, size)
    source = frame[y0:y1, x0:x1]
    # (mask * face + (1 - mask) * source) / 1, rounded: exactly the source where the mask is 0.
    source[...] = cv2.blendLinear(warped_face, source, mask, 1.0 - mask)


def paste_faces_i420(picture: np.ndarray, faces: Sequence[PastedFace], colour) -> np.ndarray:
    """Composite restored faces into a copy of a decoded I420 picture, later faces over earlier ones: as
    pasting into the picture's RGB and converting back would, but only the faces are converted.

    Arguments:
        picture: (H*3/2)xW uint8 I420 picture (pipeline.media.I420Converter), H and W even.
        faces: the restored faces of this frame.
        colour: the picture's pipeline.media.Colour (matrix and range the faces are converted to).
    Returns:
        the picture with the faces pasted; pixels outside every face's region keep their values.
    """
    result = picture.copy()
    for face in faces:
        paste_face_into_i420(result, face, colour)
    return result


def paste_face_into_i420(picture: np.ndarray, face: PastedFace, colour) -> None:
    """Blend one restored face into an I420 picture in place (see paste_faces_i420): the 512x512 crop is
    converted to YUV once, its Y warped onto the face's region of the frame and its U and V straight
    onto the region's chroma samples (each at the centre of its 2x2 luma pixels), so that no region of
    the frame is converted from RGB (costly for large faces)."""
    planes = i420_planes(picture)
    placement = _placement(face, planes[0].shape, even=True)
    if placement is None:
        return
    (x0, y0, x1, y1), to_region = placement
    size = (x1 - x0, y1 - y0)
    chroma_size = (size[0] // 2, size[1] // 2)
    to_chroma = onto_chroma_affine(to_region)
    yuv = cv2.split(cv2.transform(face.crop, rgb_to_yuv_matrix(colour)))
    mask = feathered_mask(face, to_region, size)
    chroma = cv2.resize(mask, chroma_size, interpolation=cv2.INTER_AREA)
    # Y as paste_face_into warps; a chroma sample with weight may sit up to half a frame pixel beyond
    # every luma pixel that has: that much past the crop's edge it takes the edge's colour
    borders = (cv2.BORDER_CONSTANT, cv2.BORDER_REPLICATE, cv2.BORDER_REPLICATE)
    affines, weights = (to_region, to_chroma, to_chroma), (mask, chroma, chroma)
    for step, plane, ours, affine, weight, border in zip((1, 2, 2), planes, yuv, affines, weights, borders,
                                                         strict=True):  # fmt: skip
        source = plane[y0 // step : y1 // step, x0 // step : x1 // step]  # step: 2 for the chroma planes
        warped = cv2.warpAffine(ours, affine, (source.shape[1], source.shape[0]), flags=cv2.INTER_LINEAR,
                                borderMode=border)  # fmt: skip
        source[...] = cv2.blendLinear(warped, source, weight, 1.0 - weight)


def paste_mask(face: PastedFace, frame_shape: tuple[int, int]) -> np.ndarray:
    """HxW float32 blending weight of one face over a whole frame (exactly 0 where it is not pasted)."""
    mask = np.zeros(frame_shape, np.float32)
    placement = _placement(face, frame_shape)
    if placement is not None:
        (x0, y0, x1, y1), to_region = placement
        mask[y0:y1, x0:x1] = feathered_mask(face, to_region, (x1 - x0, y1 - y0))
    return mask


def _placement(
    face: PastedFace, frame_shape: tuple[int, int], even: bool = False
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The frame region a face lands on and the 2x3 crop -> region affine, or None if off-frame; `even`:
    the region widened to even coordinates (whole 2x2 chroma blocks of an even-sized frame)."""
    region = paste_region(face.affine, face.crop.shape[0], frame_shape)
    if region is None:
        return None
    if even:
        x0, y0, x1, y1 = region
        region = (x0 - x0 % 2, y0 - y0 % 2, x1 + x1 % 2, y1 + y1 % 2)
    to_region = cv2.invertAffineTransform(face.affine)
    to_region[:, 2] -= region[:2]
    return region, to_region


def paste_region(
    affine: np.ndarray, face_size: int, frame_shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """x0, y0, x1, y1 of the frame area a crop lands on (with a pixel of margin), or None if off-frame."""
    corners = np.array([[0, 0], [face_size, 0], [0, face_size], [face_size, face_size]], dtype=np.float64)
    inverse = cv2.invertAffineTransform(affine)
    landed = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = frame_shape
    x0, y0 = np.maximum(np.floor(landed.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(landed[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(landed[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), x1, y1


def feathered_mask(face: PastedFace, to_region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW float32 mask in [0, 1] over the region: the crop's square (or face_mask) feathered in crop
    space (crop_space_mask), warped with the crop."""
    face_size = face.crop.shape[0]
    if face.face_mask is None:
        square = square_mask(face_size)
    else:
        square = crop_space_mask(face_size, np.clip(face.face_mask.astype(np.float32), 0.0, 1.0))
    return cv2.warpAffine(square, to_region, size, flags=cv2.INTER_LINEAR, borderValue=0.0)


@functools.lru_cache(maxsize=8)
def square_mask(face_size: int) -> np.ndarray:
    """The feathered mask of a whole S x S crop (made once per size; read-only)."""
    mask = crop_space_mask(face_size, np.ones((face_size, face_size), np.float32))
    mask.flags.writeable = False
    return mask


def crop_space_mask(face_size: int, weights: np.ndarray) -> np.ndarray:
    """S x S float32 in [0, 1]: `weights` eroded and blurred by a twentieth of the crop's side, so the
    blurred mask is exactly 0 on the crop's outer ring and beyond (a bilinear warp never mixes in what
    lies outside the crop) and the seam is as soft, relative to the face, at every size."""
    edge = max(1, face_size // 20)
    padded = cv2.copyMakeBorder(weights, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0.0)
    eroded = cv2.erode(padded, np.ones((2 * edge + 3, 2 * edge + 3), np.uint8), borderValue=0.0)
    blurred = cv2.GaussianBlur(eroded, (2 * edge + 1, 2 * edge + 1), 0, borderType=cv2.BORDER_CONSTANT)
    return np.clip(blurred[1:-1, 1:-1], 0.0, 1.0)


def crop_scale_in_frame(affine: np.ndarray) -> float:
    """How many frame pixels one crop pixel spans (the inverse of the affine's uniform scale)."""
    return 1.0 / float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
