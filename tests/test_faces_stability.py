"""Temporal-stability metrics of a face track: known answers on synthetic crops."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.faces.stability import (
    FLOW_SIZE,
    face_mask,
    landmark_jitter,
    measure_input,
    measure_restored,
    pack_flows,
    unpack_flows,
)

FRAMES = 20


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A 768x768 RGB picture with face-like detail at every scale (smoothed noise)."""
    rng = np.random.default_rng(13)
    coarse = cv2.resize(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), (768, 768),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.integers(0, 256, (768, 768, 3), dtype=np.uint8), (0, 0), 4)
    return cv2.addWeighted(coarse, 0.7, fine, 0.6, -40)


def static(texture: np.ndarray) -> np.ndarray:
    return np.repeat(texture[None, 128:640, 128:640], FRAMES, axis=0)


def noisy(crops: np.ndarray, sigma: float = 12, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, crops.shape)
    return np.clip(crops + noise, 0, 255).astype(np.uint8)


def translated(texture: np.ndarray, step: int = 2) -> np.ndarray:
    """The face drifting right `step` pixels a frame, as a smooth head motion does."""
    return np.stack([texture[128:640, 128 + step * t:640 + step * t] for t in range(FRAMES)])


def test_a_static_crop_repeated_has_zero_warping_error_and_change(texture):
    metrics, flows = measure_input(static(texture))
    assert metrics["warp_error_before"] == pytest.approx(0, abs=1e-3)
    assert metrics["change_before"] == 0
    assert flows.shape == (FRAMES - 1, FLOW_SIZE, FLOW_SIZE, 2) and flows.dtype == np.float16
    assert np.abs(flows).max() < 0.05


def test_per_frame_noise_raises_the_warping_error(texture):
    clean, _ = measure_input(static(texture))
    flickering, _ = measure_input(noisy(static(texture)))
    assert flickering["warp_error_before"] > 1.0 > clean["warp_error_before"] + 0.5


def test_a_smoothly_translated_crop_keeps_the_warping_error_near_zero(texture):
    """Motion shows in the frame-to-frame change but the flow explains it: the warping error stays a
    small share of the change, and far below what per-frame noise gives."""
    moving, _ = measure_input(translated(texture))
    flickering, _ = measure_input(noisy(static(texture)))
    assert moving["change_before"] > 4
    assert moving["warp_error_before"] < 0.2 * moving["change_before"]
    assert moving["warp_error_before"] < 0.5 * flickering["warp_error_before"]


def test_restored_crops_are_measured_with_the_inputs_flows(texture):
    """A restoration that adds flicker to a moving face raises the error after, and the worst frame and
    stretch are where the flicker is."""
    inputs = translated(texture)
    _, flows = measure_input(inputs)
    same = measure_restored(flows, inputs, inputs, first_frame=100)
    assert same["warp_error_after"] == pytest.approx(measure_input(inputs)[0]["warp_error_before"], rel=0.05)
    assert same["psnr_restored"] == 100.0
    flicker = inputs.copy()
    flicker[12] = noisy(inputs[12:13], sigma=30)[0]  # one bad frame
    after = measure_restored(flows, inputs, flicker, first_frame=100, stretch=4)
    assert after["warp_error_after"] > same["warp_error_after"] + 0.2  # two pairs of 19 show it
    assert after["change_after"] > same["change_after"]
    assert 10 < after["psnr_restored"] < 40
    assert after["worst_frame"] in (112, 113)  # the error shows on frame 12 (warped from 11) and 13
    assert 109 <= after["worst_stretch_start"] <= 112  # 4 frames holding frame 12


def test_a_long_stretch_is_clamped_to_a_short_track(texture):
    inputs = translated(texture)[:5]
    _, flows = measure_input(inputs)
    after = measure_restored(flows, inputs, noisy(inputs), first_frame=7, stretch=16)
    assert after["worst_stretch_start"] == 7
    one, no_flows = measure_input(inputs[:1])
    assert one["warp_error_before"] is None and len(no_flows) == 0
    assert measure_restored(no_flows, inputs[:1], inputs[:1])["worst_frame"] is None


def test_landmark_jitter_of_constant_landmarks_is_zero_and_of_known_motion_is_that_motion():
    points = np.array([[193, 240], [319, 240], [257, 314], [201, 371], [313, 371]], np.float32)
    assert landmark_jitter(np.repeat(points[None], 10, axis=0)) == 0
    moving = np.stack([points + [3 * t, 4 * t] for t in range(10)])  # 5 template pixels a frame
    assert landmark_jitter(moving) == pytest.approx(5)
    # in frame pixels, measured through each frame's frame -> crop affine: a face at half the template's
    # size moves 2.5 frame pixels a frame, 5 template pixels
    half = np.stack([points / 2 + [1.5 * t, 2 * t] for t in range(10)])
    affines = np.repeat(np.array([[[2.0, 0, 0], [0, 2.0, 0]]]), 10, axis=0)
    assert landmark_jitter(half, affines) == pytest.approx(5)
    assert landmark_jitter(points[None]) is None


def test_the_face_mask_is_the_templates_face_and_flows_pack_as_float16():
    mask = face_mask(512)
    assert mask[296, 256] and mask[240, 193] and mask[371, 313]  # nose, eye, mouth corner
    assert not mask[10, 10] and not mask[500, 256] and 0.25 < mask.mean() < 0.4
    flows = {3: np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)}
    back = unpack_flows(pack_flows(flows))
    assert list(back) == [3] and back[3].dtype == np.float16
    np.testing.assert_allclose(back[3], flows[3], atol=2e-3)
    assert pack_flows({}) == b"" and unpack_flows(b"") == {}
