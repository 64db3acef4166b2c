"""Alignment to the FFHQ template: facexlib's template, exact similarity recovery, real detections."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from faces_support import footage_paths, mobile_detector, read_clip

from pipeline.faces import alignment_affine, warp_face, warp_face_i420
from pipeline.faces.align import (
    BORDER_RGB,
    FFHQ_TEMPLATE_512,
    chroma_affine,
    face_template,
    map_points,
    onto_chroma_affine,
)
from pipeline.media import Colour, i420_to_rgb, rgb_to_i420


def _similarity(angle_degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 rotation about the origin, uniform scale, then shift."""
    angle = np.deg2rad(angle_degrees)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]]])


def test_template_is_facexlibs_ffhq_512_template(monkeypatch):
    from facexlib.utils import face_restoration_helper

    # Only the template is wanted: skip the helper's model downloads.
    monkeypatch.setattr(face_restoration_helper, "init_detection_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(face_restoration_helper, "init_parsing_model", lambda *args, **kwargs: None)
    helper = face_restoration_helper.FaceRestoreHelper(upscale_factor=1, face_size=512, device="cpu")
    np.testing.assert_allclose(FFHQ_TEMPLATE_512, helper.face_template, atol=1e-4)
    np.testing.assert_allclose(face_template(256), helper.face_template / 2, atol=1e-4)


@pytest.mark.parametrize(
    "angle, scale, shift", [(0, 1, (0, 0)), (17, 0.4, (300, 120)), (-35, 2.5, (-90, 40))]
)
def test_a_known_similarity_is_recovered(angle, scale, shift):
    to_template = _similarity(angle, scale, shift)
    landmarks = map_points(FFHQ_TEMPLATE_512, cv2.invertAffineTransform(to_template))
    np.testing.assert_allclose(alignment_affine(landmarks), to_template, atol=1e-4)


def test_a_warped_real_face_aligns_back_onto_the_template(shared_dir):
    """Warp a real frame by a known similarity: its crop and landmarks come back where they were."""
    frame = read_clip(footage_paths(shared_dir)[1], max_frames=1)[0]
    detector = mobile_detector(shared_dir)
    truth = detector.detect(frame[None])[0][0].landmarks
    known = _similarity(10, 1.3, (420, -60))
    canvas = cv2.warpAffine(frame, known, (1280, 720), flags=cv2.INTER_CUBIC)
    warped_truth = map_points(truth, known)

    reference_affine = alignment_affine(truth)
    recovered_affine = alignment_affine(warped_truth)
    in_template = map_points(warped_truth, recovered_affine)
    assert np.abs(in_template - map_points(truth, reference_affine)).max() < 2.0
    np.testing.assert_allclose(recovered_affine[:, :2] @ known[:, :2], reference_affine[:, :2], atol=1e-3)

    reference_crop = warp_face(frame, reference_affine).astype(np.float64)
    recovered_crop = warp_face(canvas, recovered_affine).astype(np.float64)
    inner = np.s_[160:420, 150:370]
    psnr = 10 * np.log10(255**2 / np.mean((reference_crop[inner] - recovered_crop[inner]) ** 2))
    assert psnr > 30, f"aligned crops differ: {psnr:.1f} dB"

    # The detector finds the warped face where it went, within its landmark noise: mobile0.25's
    # landmarks move by 5-20 template px under such warps on this footage (and by 0 under shifts on
    # its anchor grid), so 2 px can only be asked of the alignment, as above.
    (detected,) = detector.detect(canvas[None])
    assert len(detected) == 1
    detected_in_template = map_points(detected[0].landmarks, recovered_affine)
    error = np.linalg.norm(detected_in_template - in_template, axis=1).mean()
    print(f"\nmean landmark error of mobile0.25 on the warped face: {error:.2f} px at 512")
    template_eye_distance = FFHQ_TEMPLATE_512[1, 0] - FFHQ_TEMPLATE_512[0, 0]
    assert error < 0.2 * template_eye_distance


BT709 = Colour("yuv420p", 1, 1)
BT601_FULL = Colour("yuvj420p", 5, 2)
UNSPECIFIED = Colour("yuv420p", 2, 0)
COLOURS = pytest.mark.parametrize("colour", [BT709, BT601_FULL, UNSPECIFIED], ids=["709", "601full", "unset"])


@COLOURS
def test_a_crop_cut_from_i420_planes_is_the_crop_of_the_rgb_frame(shared_dir, colour):
    """The faces stage cuts crops from decoded I420 pictures: a real frame coded in the colour's matrix
    and range gives (nearly) the crop that warp_face cuts from the frame's RGB, gray border included."""
    frame = read_clip(footage_paths(shared_dir)[1], max_frames=1)[0]
    picture = rgb_to_i420(frame, colour)
    # decoded the way the faces stage's RGB would be: exactly, as the colour says (chroma upsampled)
    decoded_rgb = i420_to_rgb(picture, colour)
    for affine in (_similarity(8, 1.4, (-60, -90)), _similarity(-15, 0.7, (200, 120))):  # in, partly out
        reference = warp_face(decoded_rgb, affine).astype(np.int16)
        crop = warp_face_i420(picture, affine, colour).astype(np.int16)
        assert crop.shape == reference.shape == (512, 512, 3) and crop.dtype == np.int16
        difference = np.abs(crop - reference)
        assert difference.mean() < 1.0, difference.mean()
        assert np.percentile(difference, 99) <= 4, np.percentile(difference, 99)
    outside = warp_face_i420(picture, _similarity(0, 1.0, (5000, 5000)), colour)
    assert np.abs(outside.astype(int) - BORDER_RGB).max() <= 1  # facexlib's gray, in every matrix


@COLOURS
def test_i420_crops_convert_with_the_sources_matrix_and_range(colour):
    """Flat colours coded by swscale in the colour's matrix and range come back within 2 levels: a wrong
    matrix (BT.601 for BT.709) or range would be off by 5-30 levels on these."""
    for rgb in ((200, 40, 90), (30, 160, 220), (240, 230, 20), (128, 128, 128)):
        picture = rgb_to_i420(np.full((64, 64, 3), rgb, np.uint8), colour)
        crop = warp_face_i420(picture, _similarity(0, 4.0, (0, 0)), colour, face_size=64)
        assert np.abs(crop.astype(int) - rgb).max() <= 2, (rgb, crop[32, 32])
    wrong = Colour("yuv420p", 5, 1) if colour.colorspace == 1 else BT709
    picture = rgb_to_i420(np.full((64, 64, 3), (200, 40, 90), np.uint8), colour)
    off = warp_face_i420(picture, _similarity(0, 4.0, (0, 0)), wrong, face_size=64)
    assert np.abs(off.astype(int) - (200, 40, 90)).max() >= 5


def test_chroma_affine_places_chroma_samples_at_the_centre_of_their_luma_pixels():
    affine = _similarity(20, 1.7, (-35.0, 12.5))
    chroma = chroma_affine(affine)
    for chroma_point in ((0.0, 0.0), (10.0, 3.0), (250.5, 99.0)):
        luma_point = 2 * np.array(chroma_point) + 0.5
        np.testing.assert_allclose(map_points(chroma_point, chroma), map_points(luma_point, affine),
                                   atol=1e-9)  # fmt: skip


def test_onto_chroma_affine_is_the_other_direction_of_the_same_siting():
    to_frame = _similarity(-15, 0.6, (300.0, 41.25))  # crop -> frame luma, as paste warps
    onto = onto_chroma_affine(to_frame)
    for crop_point in ((0.0, 0.0), (100.0, 7.5), (511.0, 511.0)):
        chroma_point = map_points(crop_point, onto)
        np.testing.assert_allclose(2 * chroma_point + 0.5, map_points(crop_point, to_frame), atol=1e-9)
    # and cutting with chroma_affine from where pasting put a point brings it back
    back = chroma_affine(cv2.invertAffineTransform(to_frame))
    np.testing.assert_allclose(map_points(map_points((37.0, 250.0), onto), back), [37.0, 250.0], atol=1e-9)
