"""Scene clips: hard cuts found on decoded frames, long shots split, every frame in exactly one clip."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_missing
from video_support import make_video

from pipeline.config import EncodeSettings, ScenesSettings
from pipeline.media import concat_clips, probe, read_frames, write_video
from pipeline.scenes import Clip, analysis_size, clips_from_cuts, split_scenes

# Single-shot footage clips (no cut inside for either detector), joined back to back.
SHOTS = (
    "Francis_Collins.labeled_faces-3.mp4",  # 48 frames
    "Lou_Lang.labeled_faces-5.mp4",  # 48
    "Lesia_Burlak.labeled_faces-0.mp4",  # 52
    "Felicity_Huffman.labeled_faces-5.mp4",  # 60
)


def assert_covers(clips: list[Clip], frame_count: int) -> None:
    """Contiguous, non-empty, in order, from frame 0 to the last frame, indices 0..n-1."""
    assert [clip.index for clip in clips] == list(range(len(clips)))
    assert clips[0].start == 0 and clips[-1].end == frame_count
    for before, after in zip(clips, clips[1:], strict=False):
        assert before.end == after.start
    assert all(clip.frame_count > 0 for clip in clips)


def shot_starts(clips: list[Clip]) -> list[int]:
    return [clip.start for clip in clips if clip.start > 0 and clip.scene != clips[clip.index - 1].scene]


@pytest.fixture(scope="module")
def film(shared_dir, tmp_path_factory) -> tuple[Path, list[int]]:
    """A film made of four real shots joined by hard cuts, and the frames where shots 2..4 start."""
    paths = [shared_dir / "footage" / name for name in SHOTS]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        shared_missing(f"footage absent: {', '.join(missing)}")
    shots = [read_frames(path, 0, probe(path).frame_count, width=256, height=256) for path in paths]
    path = tmp_path_factory.mktemp("scenes") / "film.mp4"
    write_video(path, np.concatenate(shots), Fraction(20), EncodeSettings(preset="ultrafast", crf=16))
    return path, np.cumsum([len(shot) for shot in shots])[:-1].tolist()


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_of_real_footage_are_found_within_a_frame(film, detector):
    path, cuts = film
    info = probe(path)
    clips = split_scenes(path, ScenesSettings(detector=detector), info)
    assert_covers(clips, info.frame_count)
    found = shot_starts(clips)
    assert len(found) == len(cuts), f"expected cuts near {cuts}, found {found}"
    for expected, got in zip(cuts, found, strict=True):
        assert abs(expected - got) <= 1, f"expected cuts near {cuts}, found {found}"


def test_long_shots_are_split_into_even_clips_of_one_scene(film):
    path, cuts = film
    info = probe(path)
    done = []
    clips = split_scenes(path, ScenesSettings(max_clip_frames=25), info, progress=done.append)
    assert sum(done) == info.frame_count
    assert_covers(clips, info.frame_count)
    assert max(clip.frame_count for clip in clips) <= 25
    assert len({clip.scene for clip in clips}) == len(cuts) + 1
    for scene in {clip.scene for clip in clips}:
        lengths = [clip.frame_count for clip in clips if clip.scene == scene]
        assert max(lengths) - min(lengths) <= 1


def test_cuts_between_synthetic_patterns(tmp_path):
    """Hard cuts between ffmpeg test patterns, joined by stream copy at 24000/1001 fps."""
    parts = [
        make_video(tmp_path / f"{source}.mp4", frames, size="128x96", source=source)
        for source, frames in (("testsrc", 20), ("smptebars", 25), ("mandelbrot", 22))
    ]
    path = concat_clips(parts, tmp_path / "patterns.mp4")
    info = probe(path)
    assert info.frame_count == 67 and info.frame_rate == Fraction(24000, 1001)
    clips = split_scenes(path, ScenesSettings(min_scene_len=5), info)
    assert_covers(clips, 67)
    found = shot_starts(clips)
    assert len(found) == 2 and abs(found[0] - 20) <= 1 and abs(found[1] - 45) <= 1, found


def test_clips_from_cuts_cover_every_frame_once():
    clips = clips_from_cuts([30, 10, 10, 0, 95, 100, 120], frame_count=100, max_clip_frames=1000)
    assert [(c.start, c.end, c.scene) for c in clips] == [(0, 10, 0), (10, 30, 1), (30, 95, 2), (95, 100, 3)]
    assert_covers(clips, 100)


def test_clips_from_cuts_splits_long_shots_evenly():
    clips = clips_from_cuts([], frame_count=10, max_clip_frames=4)
    assert [(c.start, c.end, c.scene) for c in clips] == [(0, 4, 0), (4, 7, 0), (7, 10, 0)]
    clips = clips_from_cuts([8], frame_count=17, max_clip_frames=4)
    assert [c.frame_count for c in clips] == [4, 4, 3, 3, 3]
    assert [c.scene for c in clips] == [0, 0, 1, 1, 1]


def test_clips_from_cuts_edge_cases():
    assert clips_from_cuts([], frame_count=0, max_clip_frames=8) == []
    assert clips_from_cuts([], frame_count=1, max_clip_frames=8) == [Clip(0, 0, 1, 0)]
    with pytest.raises(ValueError, match="max_clip_frames"):
        clips_from_cuts([], frame_count=5, max_clip_frames=0)


def test_analysis_size_keeps_aspect_and_even_sizes():
    assert analysis_size(1920, 1080, 256) == (256, 144)
    assert analysis_size(720, 576, 255) == (254, 204)
    assert analysis_size(200, 100, 256) == (0, 0)
    assert analysis_size(1920, 1080, 0) == (0, 0)
