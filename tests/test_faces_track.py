"""Face tracks in a clip: real footage through the detector, and the tracker's rules on known faces."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faces_support import footage_paths, mobile_detector, mobile_settings, read_clip

from pipeline.faces import FaceSettings, Track, skip_counts, track_faces
from pipeline.faces.detect import Detection
from pipeline.faces.track import INSIDE_OTHER_FACE, SHORT_TRACK, SMALL_FACE, build_tracks


def _restored(tracks: list[Track]) -> list[Track]:
    return [track for track in tracks if track.restore]


@pytest.mark.slow
def test_every_footage_clip_gives_one_track_over_nearly_all_its_frames(shared_dir):
    settings = mobile_settings(shared_dir)
    detector = mobile_detector(shared_dir)
    for path in footage_paths(shared_dir):
        frames = read_clip(path, max_frames=160)  # all but one clip whole (its 464 frames: half the time)
        tracks = _restored(track_faces(frames, detector, settings, clip=path.stem))
        assert len(tracks) == 1, f"{path.name}: {len(tracks)} restorable tracks"
        coverage = len(tracks[0]) / len(frames)
        assert coverage >= 0.95, f"{path.name}: the track covers {coverage:.0%} of the frames"
        assert tracks[0].clip == path.stem


def test_two_faces_side_by_side_keep_their_ids_over_the_whole_clip(shared_dir):
    paths = {path.stem: path for path in footage_paths(shared_dir)}
    left = read_clip(paths["Garry_Kasparov.labeled_faces-2"])
    right = read_clip(paths["Jan_Bjoerklund.labeled_faces-0"])
    length = min(len(left), len(right))
    frames = np.concatenate([left[:length], right[:length]], axis=2)
    tracks = _restored(track_faces(frames, mobile_detector(shared_dir), mobile_settings(shared_dir)))
    assert len(tracks) == 2
    assert [track.track_id for track in tracks] == sorted({track.track_id for track in tracks})
    for track in tracks:
        assert len(track) >= 0.95 * length
        on_the_left = (track.boxes[:, 0] + track.boxes[:, 2]) / 2 < 512
        assert on_the_left.all() or not on_the_left.any(), f"track {track.track_id} swaps sides"
    sides = {bool((track.boxes[0, 0] + track.boxes[0, 2]) / 2 < 512) for track in tracks}
    assert sides == {True, False}


def test_detecting_every_third_frame_still_covers_every_frame(shared_dir):
    frames = read_clip(footage_paths(shared_dir)[0])
    settings = mobile_settings(shared_dir, detect_every=3)
    tracks = _restored(track_faces(frames, mobile_detector(shared_dir), settings))
    assert len(tracks) == 1
    track = tracks[0]
    assert len(track) >= 0.95 * len(frames)
    assert set(np.flatnonzero(track.detected) + track.frames[0]) <= set(range(0, len(frames), 3)) | {
        len(frames) - 1
    }


def test_a_clip_without_faces_gives_no_tracks(shared_dir):
    rng = np.random.default_rng(0)
    gray = np.full((6, 360, 640, 3), 128, np.uint8)
    noise = rng.integers(0, 256, size=(6, 360, 640, 3), dtype=np.uint8)
    detector = mobile_detector(shared_dir)
    assert track_faces(np.concatenate([gray, noise]), detector, mobile_settings(shared_dir)) == []


def _face(x: float, y: float, size: float = 100.0, score: float = 0.99) -> Detection:
    """A synthetic detection: a size x size box at (x, y) with plausible landmark positions."""
    box = np.array([x, y, x + size, y + size], np.float32)
    relative = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    return Detection(box=box, score=score, landmarks=np.array([x, y], np.float32) + relative * size)


def test_a_short_gap_is_bridged_by_linear_interpolation():
    settings = FaceSettings(max_gap=3, min_track_len=1)
    detections = {frame: [_face(10.0 * frame, 0)] for frame in range(10) if frame not in (4, 5, 6)}
    (track,) = build_tracks(detections, settings)
    np.testing.assert_array_equal(track.frames, np.arange(10))
    np.testing.assert_array_equal(track.detected, [frame not in (4, 5, 6) for frame in range(10)])
    np.testing.assert_allclose(track.boxes[:, 0], 10.0 * np.arange(10), atol=1e-4)
    np.testing.assert_allclose(track.landmarks[5], _face(50.0, 0).landmarks, atol=1e-4)
    assert np.isnan(track.scores[5]) and track.scores[3] == pytest.approx(0.99)


def test_a_gap_longer_than_max_gap_splits_the_track():
    settings = FaceSettings(max_gap=2, min_track_len=1)
    detections = {frame: [_face(0, 0)] for frame in range(12) if frame not in (4, 5, 6)}
    tracks = build_tracks(detections, settings)
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(0, 3), (7, 11)]


def test_crossing_neighbours_are_assigned_by_overall_cost_not_order():
    settings = FaceSettings(min_track_len=1)
    detections = {
        frame: [_face(300.0 - 5 * frame, 0), _face(100.0 + 5 * frame, 0)][:: 1 if frame % 2 else -1]
        for frame in range(8)
    }
    tracks = build_tracks(detections, settings)
    assert len(tracks) == 2
    for track in tracks:
        assert np.all(np.abs(np.diff(track.boxes[:, 0])) == pytest.approx(5.0))


def test_short_tracks_and_small_faces_are_kept_but_marked_and_counted():
    settings = FaceSettings(min_track_len=5, min_eye_dist=20.0)
    detections = {frame: [_face(0, 0, size=100.0), _face(400, 0, size=30.0)] for frame in range(10)}
    detections.update({frame: [_face(200, 300)] for frame in (10, 11)})
    tracks = build_tracks(detections, settings)
    assert [t.skip_reason for t in tracks] == ["", SMALL_FACE, SHORT_TRACK]
    assert skip_counts(tracks) == {"restore": 1, SHORT_TRACK: 1, SMALL_FACE: 1, INSIDE_OTHER_FACE: 0}


def test_a_less_confident_face_inside_another_face_is_marked_not_to_restore():
    face = _face(100, 100, size=200.0, score=0.99)
    beside = _face(320, 100, size=200.0, score=0.8)
    on_forehead = _face(110, 60, size=150.0, score=0.9)
    detections = {frame: [face, beside] for frame in range(3)}
    detections.update({frame: [face, beside, on_forehead] for frame in range(3, 10)})
    tracks = build_tracks(detections, FaceSettings(min_track_len=1))
    assert [t.skip_reason for t in tracks] == ["", "", INSIDE_OTHER_FACE]


def test_track_rows_write_to_parquet(tmp_path):
    (track,) = build_tracks({frame: [_face(frame, 0)] for frame in range(6)}, FaceSettings(), clip="c7")
    table = pa.Table.from_pylist(track.rows())
    pq.write_table(table, tmp_path / "tracks.parquet")
    read_back = pq.read_table(tmp_path / "tracks.parquet").to_pylist()
    assert [row["frame"] for row in read_back] == list(range(6))
    assert read_back[2]["clip"] == "c7" and len(read_back[2]["smoothed_landmarks"]) == 10
    assert read_back[2]["box"] == pytest.approx(track.boxes[2].tolist())
