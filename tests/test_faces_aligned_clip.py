"""Aligned-clip mode: face-crop inputs go to the network whole, and come back at their size."""
from __future__ import annotations

import numpy as np
from faces_support import footage_paths, read_clip

from pipeline.faces import faces_to_frames, frames_to_faces


def test_face_crop_clips_resize_to_512_and_back(shared_dir):
    clip = read_clip(footage_paths(shared_dir)[0], max_frames=4)
    small = np.stack([frame[::2, ::2] for frame in clip])
    faces = frames_to_faces(small)
    assert faces.shape == (4, 512, 512, 3) and faces.dtype == np.uint8
    back = faces_to_frames(faces, 256, 256)
    assert back.shape == small.shape
    mse = np.mean((back.astype(np.float64) - small) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35


def test_a_512_clip_passes_through_unchanged(shared_dir):
    clip = read_clip(footage_paths(shared_dir)[0], max_frames=2)
    np.testing.assert_array_equal(faces_to_frames(frames_to_faces(clip), 512, 512), clip)
