"""Landmark smoothing: less jitter on real footage, no harm on short tracks."""
from __future__ import annotations

import numpy as np
import pytest
from faces_support import footage_paths, mobile_detector, mobile_settings, read_clip

from pipeline.faces import alignment_affine, track_faces
from pipeline.faces.smooth import smooth_landmarks, template_space_motion


def _template_motion(landmarks: np.ndarray) -> float:
    affines = np.stack([alignment_affine(points) for points in landmarks])
    return template_space_motion(landmarks, affines)


def test_smoothing_reduces_landmark_jitter_on_real_footage(shared_dir):
    path = next(p for p in footage_paths(shared_dir) if p.stem == "Lesia_Burlak.labeled_faces-0")
    frames = read_clip(path)
    tracks = track_faces(frames, mobile_detector(shared_dir), mobile_settings(shared_dir))
    (track,) = [t for t in tracks if t.restore]
    raw_motion = _template_motion(track.landmarks)
    smoothed_motion = _template_motion(track.smoothed_landmarks)
    print(
        f"\n{path.stem}: mean frame-to-frame landmark motion in 512 template px, "
        f"raw {raw_motion:.2f}, smoothed {smoothed_motion:.2f}"
    )
    assert smoothed_motion < 0.85 * raw_motion
    eye_distance = np.median(track.eye_distances())
    assert np.abs(track.smoothed_landmarks - track.landmarks).mean() < 0.1 * eye_distance


def test_smoothing_pulls_noisy_landmarks_towards_the_true_path():
    rng = np.random.default_rng(0)
    frames = np.arange(60)[:, None, None]
    true_path = np.broadcast_to(np.array([100.0, 50.0]) + frames * [2.0, 0.5], (60, 5, 2))
    noisy = true_path + rng.normal(scale=2.0, size=true_path.shape)
    for method in ("savgol", "gaussian"):
        smoothed = smooth_landmarks(noisy, method, window=9)
        assert np.abs(smoothed - true_path).mean() < 0.7 * np.abs(noisy - true_path).mean(), method


@pytest.mark.parametrize("method", ["savgol", "gaussian", "none"])
@pytest.mark.parametrize("length", [1, 2, 3, 4, 8])
def test_short_tracks_keep_their_shape_and_stay_finite(method, length):
    landmarks = np.random.default_rng(length).normal(100, 5, size=(length, 5, 2)).astype(np.float32)
    smoothed = smooth_landmarks(landmarks, method, window=9)
    assert smoothed.shape == landmarks.shape and np.isfinite(smoothed).all()
    if method == "none" or length == 1:
        np.testing.assert_array_equal(smoothed, landmarks)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="smoothing"):
        smooth_landmarks(np.zeros((5, 5, 2)), "kalman")
