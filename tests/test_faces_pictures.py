"""The pictures of a restored track: a before/after contact sheet and a flipbook, bounded in size."""
from __future__ import annotations

import io

import fsspec
import numpy as np
from PIL import Image

from pipeline.faces.pictures import (
    FLIPBOOK_SIDE,
    SHEET_SIDE,
    contact_sheet,
    flipbook,
    pack_picture_frames,
    picture_frames,
    publish_pictures,
    sheet_indices,
    unpack_picture_frames,
)


def track(frames: int, side: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise crops (the hardest to compress) and their 'restored' copies (colours inverted)."""
    inputs = np.random.default_rng(seed).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    return inputs, 255 - inputs


def test_the_contact_sheet_shows_frames_across_the_track_input_above_restored():
    inputs = np.stack([np.full((64, 64, 3), 10 * t, np.uint8) for t in range(26)])  # grey level = 10 x frame
    restored = 255 - inputs
    sheet = np.asarray(Image.open(io.BytesIO(contact_sheet(inputs, restored, n=6, first_frame=100))))
    assert sheet.shape == (18 + 2 * SHEET_SIDE + 4, 6 * SHEET_SIDE + 5 * 4, 3)
    tops = [int(sheet[18 + SHEET_SIDE // 2, i * (SHEET_SIDE + 4) + SHEET_SIDE // 2, 0]) for i in range(6)]
    bottoms = [int(sheet[-SHEET_SIDE // 2, i * (SHEET_SIDE + 4) + SHEET_SIDE // 2, 0]) for i in range(6)]
    expected = [10 * t for t in (0, 5, 10, 15, 20, 25)]  # first to last, evenly
    assert np.abs(np.array(tops) - expected).max() <= 3
    assert np.abs(np.array(bottoms) - (255 - np.array(expected))).max() <= 3
    assert (sheet[:14].min(axis=(0, 2)) < 128).sum() > 20  # frame numbers written above the pictures
    assert sheet_indices(3).tolist() == [0, 1, 2] and sheet_indices(0).tolist() == []


def test_the_flipbook_is_an_animated_webp_of_the_stretch_side_by_side_at_the_tracks_rate():
    inputs, restored = track(40)
    data = flipbook(inputs, restored, start=10, length=16, frame_rate=25)
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP" and image.n_frames == 16
    assert image.size == (2 * FLIPBOOK_SIDE + 4, FLIPBOOK_SIDE)
    image.seek(3)
    image.load()
    assert image.info["duration"] == 40
    assert Image.open(io.BytesIO(flipbook(inputs, restored, length=500))).n_frames == 32  # at most 32


def test_a_long_tracks_pictures_are_no_larger_than_a_short_ones_bound():
    """The same few pictures per track: what rides between the stages and the files written stay
    within a bound whatever the track's length (3,000 frames here against 40)."""
    sizes = {}
    for frames in (40, 3000):
        inputs, restored = track(frames, seed=frames)
        picked = picture_frames(inputs, restored, first_frame=0, stretch_start=frames // 2, stretch=16)
        assert picked["flip_before"].shape == (16, FLIPBOOK_SIDE, FLIPBOOK_SIDE, 3)
        assert picked["sheet_after"].shape == (6, SHEET_SIDE, SHEET_SIDE, 3)
        sheet = contact_sheet(picked["sheet_before"], picked["sheet_after"], numbers=picked["sheet_numbers"])
        book = flipbook(picked["flip_before"], picked["flip_after"], frame_rate=24)
        sizes[frames] = (len(pack_picture_frames({0: picked})), len(sheet), len(book))
    short, long = sizes[40], sizes[3000]
    assert long[0] == short[0] < 7_500_000  # the shrunk frames: 16 + 6 pairs, ~7 MB at most
    assert long[1] < 400_000 and long[2] < 4_000_000, long  # noise: the worst case for compression
    assert long[1] < 1.5 * short[1] and long[2] < 1.5 * short[2]


def test_pictures_are_published_under_the_output_relative_paths_back(tmp_path, moto_s3):
    inputs, restored = track(20)
    frames = unpack_picture_frames(pack_picture_frames(
        {1: picture_frames(inputs, restored, 50, 52, 16), 4: picture_frames(inputs, restored, 50, 50, 16)}))
    assert sorted(frames) == [1, 4] and frames[1]["sheet_numbers"].tolist()[0] == 50
    for output in (str(tmp_path / "out"), "s3://archive/run-1"):
        written = publish_pictures(output, "reels/news 1962", 3, 25, frames)
        assert written[1] == {"sheet": "report/pictures/reels_news_1962/clip00003-track1-sheet.jpg",
                              "flipbook": "report/pictures/reels_news_1962/clip00003-track1-flipbook.webp"}
        fs, root = fsspec.core.url_to_fs(output)
        for paths in written.values():
            assert Image.open(io.BytesIO(fs.cat_file(f"{root}/{paths['sheet']}"))).format == "JPEG"
            assert Image.open(io.BytesIO(fs.cat_file(f"{root}/{paths['flipbook']}"))).n_frames == 16
        assert not [name for name in fs.find(root) if "/." in name]  # no temporary files left
