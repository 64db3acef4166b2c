"""Paste-back: identity restorations return the frame, pixels outside the masks never change."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from faces_support import footage_paths, mobile_detector, mobile_settings, read_clip

from pipeline.faces import PastedFace, align_track, paste_faces, track_faces
from pipeline.faces.paste import paste_faces_i420, paste_mask
from pipeline.media import Colour, i420_planes, i420_to_rgb, rgb_to_i420


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def two_faces_in_a_wide_frame(shared_dir):
    """A 1280x720 frame with two footage faces shrunk side by side, and its tracks and crops."""
    paths = footage_paths(shared_dir)
    canvas = np.full((1, 720, 1280, 3), 30, np.uint8)
    for path, (x, y, size) in zip(paths[:2], [(120, 100, 320), (800, 300, 360)], strict=True):
        face = read_clip(path, max_frames=1)[0]
        canvas[0, y : y + size, x : x + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    tracks = track_faces(canvas, mobile_detector(shared_dir), mobile_settings(shared_dir, min_track_len=1))
    assert len(tracks) == 2
    faces = []
    for track in tracks:
        aligned = align_track(canvas, track)
        faces.append(PastedFace(aligned.crops[0], aligned.affines[0]))
    return canvas[0], tracks, faces


def test_identity_restoration_round_trips_inside_and_is_bit_exact_outside(two_faces_in_a_wide_frame):
    frame, tracks, faces = two_faces_in_a_wide_frame
    pasted = paste_faces(frame, faces)
    for track in tracks:
        x0, y0, x1, y1 = np.round(track.boxes[0]).astype(int)
        psnr = _psnr(pasted[y0:y1, x0:x1], frame[y0:y1, x0:x1])
        print(f"\ntrack {track.track_id}: {psnr:.1f} dB inside its box")
        assert psnr >= 45
    outside = np.all([paste_mask(face, frame.shape[:2]) == 0 for face in faces], axis=0)
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(pasted[outside], frame[outside])


def test_restored_faces_replace_the_source_inside_their_masks(two_faces_in_a_wide_frame):
    frame, _, faces = two_faces_in_a_wide_frame
    white_faces = [PastedFace(np.full_like(face.crop, 255), face.affine) for face in faces]
    pasted = paste_faces(frame, white_faces)
    for face in white_faces:
        mask = paste_mask(face, frame.shape[:2])
        fully_restored = mask > 0.999
        assert (pasted[fully_restored] == 255).all()
        assert fully_restored.sum() > 0.5 * (mask > 0).sum()
    outside = np.all([paste_mask(face, frame.shape[:2]) == 0 for face in white_faces], axis=0)
    np.testing.assert_array_equal(pasted[outside], frame[outside])
    beyond_the_crops = np.all([~_crop_footprint(face, frame.shape[:2]) for face in white_faces], axis=0)
    np.testing.assert_array_equal(pasted[beyond_the_crops], frame[beyond_the_crops])


def _crop_footprint(face: PastedFace, frame_shape: tuple[int, int]) -> np.ndarray:
    """HxW bool: the frame pixels the crop's square covers, drawn from its corners (no paste code)."""
    size = face.crop.shape[0]
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    inverse = cv2.invertAffineTransform(face.affine)
    polygon = np.round(corners @ inverse[:, :2].T + inverse[:, 2]).astype(np.int32)
    footprint = np.zeros(frame_shape, np.uint8)
    cv2.fillConvexPoly(footprint, polygon, 1)
    return footprint.astype(bool)


def test_the_feathered_edge_scales_with_the_face(two_faces_in_a_wide_frame):
    frame, _, faces = two_faces_in_a_wide_frame
    face = faces[0]
    half_frame_shape = (frame.shape[0] // 2, frame.shape[1] // 2)
    half_size_face = PastedFace(face.crop, face.affine @ np.diag([2.0, 2.0, 1.0]))

    def feathered_area(face: PastedFace, frame_shape: tuple[int, int]) -> int:
        mask = paste_mask(face, frame_shape)
        return int(((mask > 0) & (mask < 0.999)).sum())

    area_ratio = feathered_area(face, frame.shape[:2]) / feathered_area(half_size_face, half_frame_shape)
    assert area_ratio == pytest.approx(4, rel=0.25)


def test_a_face_leaving_the_frame_is_pasted_up_to_the_edge(two_faces_in_a_wide_frame):
    frame, _, faces = two_faces_in_a_wide_frame
    shifted = faces[0].affine.copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([250.0, 0.0])  # the crop's footprint moves 250 px left
    face = PastedFace(np.full_like(faces[0].crop, 255), shifted)
    pasted = paste_faces(frame, [face])
    mask = paste_mask(face, frame.shape[:2])
    assert mask[:, 0].max() > 0.999
    np.testing.assert_array_equal(pasted[mask == 0], frame[mask == 0])


def test_frames_without_faces_are_left_untouched(shared_dir):
    rng = np.random.default_rng(1)
    gray = np.full((4, 240, 320, 3), 90, np.uint8)
    frames = np.concatenate([gray, rng.integers(0, 256, (4, 240, 320, 3), np.uint8)])
    tracks = track_faces(frames, mobile_detector(shared_dir), mobile_settings(shared_dir))
    assert tracks == []
    for frame in frames:
        pasted = paste_faces(frame, [])
        assert pasted is not frame
        np.testing.assert_array_equal(pasted, frame)



@pytest.mark.parametrize("colour", [Colour("yuv420p", 1, 1), Colour("yuvj420p", 5, 2)],
                         ids=["bt709", "bt601-full-range"])  # fmt: skip
def test_pasting_into_decoded_yuv_matches_pasting_into_rgb_then_converting(two_faces_in_a_wide_frame, colour):
    """What paste and encode do for 4:2:0 output: the faces alone converted to the source's YUV (the
    standard matrix, cv2.transform) and blended plane by plane give the picture that pasting into its
    RGB and converting all of it with swscale does, within half a level on average where the faces land
    (0.07-0.15 measured; 0.7 in Y converting the faces with BT.601 instead of BT.709). In full range,
    swscale's chroma sits about a level below the standard formula's (0.5 measured in U): a level
    there; elsewhere the picture keeps its values."""
    frame, _, faces = two_faces_in_a_wide_frame
    picture = rgb_to_i420(frame, colour)
    negatives = [PastedFace(255 - face.crop, face.affine) for face in faces]  # a restoration that shows
    pasted = paste_faces_i420(picture, negatives, colour)
    expected = rgb_to_i420(paste_faces(i420_to_rgb(picture, colour), negatives), colour)

    mask = np.max([paste_mask(face, frame.shape[:2]) for face in negatives], axis=0)
    chroma_mask = cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2), interpolation=cv2.INTER_AREA)
    for name, ours, theirs, source, weight in zip("YUV", *map(i420_planes, (pasted, expected, picture)),
                                                 (mask, chroma_mask, chroma_mask), strict=True):  # fmt: skip
        difference = np.abs(ours.astype(int) - theirs)[weight > 0].mean()
        change = np.abs(ours.astype(int) - source)[weight > 0.5].mean()
        print(f"\n{colour.pix_fmt} {name}: {difference:.3f} from pasting in RGB where the faces land, "
              f"changed by {change:.1f}")  # fmt: skip
        assert difference < (1.0 if colour.pix_fmt == "yuvj420p" and name != "Y" else 0.5) and change > 10
        np.testing.assert_array_equal(ours[weight == 0], source[weight == 0])


@pytest.mark.parametrize("path", ["rgb", "i420"])
def test_the_paste_never_reads_the_crops_outer_pixels(two_faces_in_a_wide_frame, path):
    """The feathered mask is 0 on the crop's outer ring, so what a warp would take from beyond the crop
    (paste's warps use a constant border: half the time of a replicated one) never shows: a crop whose
    outer ring is changed pastes bit for bit as the crop does, at every size it lands at."""
    frame, _, faces = two_faces_in_a_wide_frame
    colour = Colour("yuv420p", 1, 1)
    picture = rgb_to_i420(frame, colour)
    for scale in (0.3, 1.0, 2.5):  # the crop shrunk, as it is, enlarged onto the frame
        moved = []
        for face in faces:
            affine = face.affine.copy()
            affine[:, :2] /= scale
            moved.append(PastedFace(face.crop, affine))
        ringed = []
        for face in moved:
            crop = face.crop.copy()
            crop[[0, -1]], crop[:, [0, -1]] = (255, 0, 255), (0, 255, 0)
            ringed.append(PastedFace(crop, face.affine))
        if path == "rgb":
            plain, changed = paste_faces(frame, moved), paste_faces(frame, ringed)
        else:
            plain = paste_faces_i420(picture, moved, colour)
            changed = paste_faces_i420(picture, ringed, colour)
        assert not np.array_equal(plain, picture if path == "i420" else frame)  # the faces were pasted
        np.testing.assert_array_equal(changed, plain)
