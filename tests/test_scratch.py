"""pipeline.scratch: the clip-sized arrays of a stage reuse the memory of the last clip's, and an array
still in use is never handed out again."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import scratch


@pytest.fixture
def kept():
    scratch.keep_scratch()
    try:
        yield
    finally:
        scratch.keep_scratch(False)


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_outside_a_stage_empty_is_np_empty():
    first = scratch.empty("frames", (4, 8, 8, 3))
    at = address(first)
    del first
    assert not scratch.scratch_kept() and scratch.kept_bytes() == 0
    second = scratch.empty("frames", (4, 8, 8, 3))
    assert second.shape == (4, 8, 8, 3) and second.dtype == np.uint8 and second.flags.c_contiguous
    assert scratch.kept_bytes() == 0 or address(second) != at


def test_a_released_array_is_reused_and_a_held_one_never(kept):
    first = scratch.empty("frames", (10, 4), np.float32)
    at = address(first)
    del first
    second = scratch.empty("frames", (5, 4), np.float32)  # smaller: fits in the same buffer
    assert address(second) == at and scratch.kept_bytes() == 160
    held = second[1:].T  # a derived view still holds the buffer
    del second
    third = scratch.empty("frames", (5, 4), np.float32)
    assert not np.shares_memory(third, held) and scratch.kept_bytes() == 160 + 80
    held[...] = 1.0
    third[...] = 2.0
    assert (held == 1.0).all()  # writing one never touches the other
    other_role = scratch.empty("crops", (5, 4), np.float32)
    assert not np.shares_memory(other_role, third) and not np.shares_memory(other_role, held)


def test_a_larger_request_grows_a_free_buffer_rather_than_keep_another(kept):
    small = scratch.empty("frames", (100,))
    del small
    large = scratch.empty("frames", (1000,))
    assert scratch.kept_bytes() == 1000 and large.nbytes == 1000


def test_no_more_than_kept_bytes_is_kept(kept, monkeypatch):
    monkeypatch.setattr(scratch, "KEPT_BYTES", 1500)
    first = scratch.empty("frames", (1000,))
    beyond = scratch.empty("frames", (1000,))  # the first is in use: a second would pass the limit
    assert scratch.kept_bytes() == 1000 and not np.shares_memory(first, beyond)
    del first, beyond
    assert scratch.kept_bytes() == 1000


def test_a_stage_reads_each_clip_into_the_memory_of_the_last(kept, shared_dir):
    """The faces stage's decode (full-size pictures, the detector's shrunk copies) and its crops come
    from the buffers of the clip before, once that clip is let go: no clip-sized array is faulted in anew
    for every clip (BENCHMARKS.md, "Clip-sized arrays reuse the last clip's memory")."""
    from pipeline.faces.align import align_track
    from pipeline.faces.track import Track
    from pipeline.media import read_pictures_with_preview
    from tests.faces_support import footage_paths

    path = footage_paths(shared_dir)[0]
    pictures, colour, shrunk, _ = read_pictures_with_preview(path, 0, 24, 256)
    places = address(pictures), address(shrunk)
    landmarks = np.tile(np.array([[190, 240], [320, 240], [256, 300], [200, 360], [310, 360]], np.float32),
                        (24, 1, 1))  # fmt: skip
    track = Track("0", 0, np.arange(24), np.zeros((24, 4), np.float32), np.ones(24, np.float32),
                  np.ones(24, bool), landmarks, landmarks)
    crops = align_track(pictures, track, colour=colour).crops
    crops_at = address(crops)
    first = pictures.copy(), crops.copy()

    del pictures, shrunk, crops
    pictures, colour, shrunk, _ = read_pictures_with_preview(path, 24, 48, 256)
    assert (address(pictures), address(shrunk)) == places
    crops = align_track(pictures, track, colour=colour).crops
    assert address(crops) == crops_at
    assert not np.array_equal(pictures, first[0]) and not np.array_equal(crops, first[1])  # the new clip's

    # while the last clip's arrays are held, a new clip gets memory of its own
    again, _, _, _ = read_pictures_with_preview(path, 24, 48, 256)
    assert not np.shares_memory(again, pictures) and np.array_equal(again, pictures)
