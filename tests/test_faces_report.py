"""`dpt-batch faces VIDEO -o DIR`: scene clips, face tracks in Parquet and a preview video."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from shared_data import shared_missing
from video_support import make_video

from pipeline.cli import main
from pipeline.config import EncodeSettings, load_settings, named_config
from pipeline.faces_report import TRACK_SCHEMA, preview_size, write_faces_report
from pipeline.media import probe, read_frames, write_video

SHOT_FRAMES = 8
SHOTS = ("Francis_Collins.labeled_faces-3.mp4", "Lesia_Burlak.labeled_faces-0.mp4")


def fast_overrides(weights: Path) -> list[str]:
    """Smoke settings made quicker for a 2-core CI: small detection size, every 4th frame."""
    return [
        f"faces.detector_weights={weights}",
        "faces.detect_max_side=192",
        "faces.detect_every=4",
        "scenes.min_scene_len=4",
        "encode.preset=ultrafast",
    ]


@pytest.fixture(scope="module")
def weights(shared_dir) -> Path:
    path = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    if not path.is_file():
        shared_missing(f"detector weights {path} are absent")
    return path


@pytest.fixture(scope="module")
def two_shots(shared_dir, tmp_path_factory) -> Path:
    """Two real one-face shots of SHOT_FRAMES frames each, joined by a hard cut (20 fps, 512x512)."""
    paths = [shared_dir / "footage" / name for name in SHOTS]
    if not all(path.is_file() for path in paths):
        shared_missing(f"footage absent: {', '.join(SHOTS)}")
    frames = np.concatenate([read_frames(path, 0, SHOT_FRAMES) for path in paths])
    path = tmp_path_factory.mktemp("faces") / "two_shots.mp4"
    return write_video(path, frames, Fraction(20), EncodeSettings(preset="ultrafast", crf=14))


def run_cli(*args: str):
    return CliRunner().invoke(main, ["faces", *args], catch_exceptions=False)


def test_faces_command_writes_tracks_and_preview(two_shots, weights, tmp_path):
    out = tmp_path / "report"
    sets = [arg for override in fast_overrides(weights) for arg in ("--set", override)]
    result = run_cli(str(two_shots), "-o", str(out), "--config", str(named_config("smoke")), *sets)
    assert result.exit_code == 0, result.output
    assert "2 clips, 2 face tracks (2 to restore)" in result.stderr

    table = pq.read_table(out / "tracks.parquet")
    assert table.schema.equals(TRACK_SCHEMA)
    rows = table.to_pandas()
    total = 2 * SHOT_FRAMES
    assert sorted(rows["frame"]) == list(range(total)), "one face on every frame, each in one track row"
    first_shot = rows[rows["frame"] < SHOT_FRAMES]
    second_shot = rows[rows["frame"] >= SHOT_FRAMES]
    assert set(first_shot["clip"]) == {0} and set(second_shot["clip"]) == {1}
    assert set(first_shot["track_id"]) == {0} and set(second_shot["track_id"]) == {0}
    assert rows["restore"].all() and (rows["skip_reason"] == "").all()
    assert 4 <= rows["detected"].sum() < total  # every 4th frame (and each clip's last) detected
    boxes = np.stack(rows["box"])
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert np.stack(rows["landmarks"]).shape == (total, 10)
    assert np.stack(rows["smoothed_landmarks"]).shape == (total, 10)

    preview = probe(out / "preview.mp4")
    assert (preview.frame_count, preview.frame_rate, preview.width, preview.height) == (total, 20, 512, 512)
    drawn, source = read_frames(out / "preview.mp4", 3, 4)[0], read_frames(two_shots, 3, 4)[0]
    x0, y0, x1, y1 = boxes[rows["frame"].to_numpy() == 3][0].round().astype(int)
    border = np.abs(drawn[y0, x0:x1].astype(int) - source[y0, x0:x1]).mean()
    inside = np.abs(drawn[(y0 + y1) // 2, x0 + 4:x1 - 4].astype(int) - source[(y0 + y1) // 2, x0 + 4:x1 - 4])
    assert border > 3 * inside.mean(), "the track's box is drawn on the preview"


def test_video_without_faces_gives_an_empty_typed_table(weights, tmp_path):
    video = make_video(tmp_path / "pattern.mp4", 6, size="128x96")
    settings = load_settings(named_config("smoke"), fast_overrides(weights))
    report = write_faces_report(video, tmp_path / "report", settings, preview=False, device="cpu")
    assert report.tracks == 0 and report.preview_path is None
    assert [(clip.start, clip.end) for clip in report.clips] == [(0, 6)]
    table = pq.read_table(report.tracks_path)
    assert table.num_rows == 0 and table.schema.equals(TRACK_SCHEMA)
    assert not (tmp_path / "report" / "preview.mp4").exists()


def test_bad_settings_are_usage_errors_naming_the_key(tmp_path):
    video = make_video(tmp_path / "pattern.mp4", 2)
    result = run_cli(str(video), "-o", str(tmp_path / "out"), "--set", "faces.detectr=retinaface_mobile0.25")
    assert result.exit_code == 2
    assert "faces.detectr: unknown setting; did you mean faces.detector?" in result.stderr

    result = run_cli(str(video), "-o", str(tmp_path / "out"), "--set", "faces.detector_weights=nowhere.pth")
    assert result.exit_code == 2
    assert "faces.detector_weights: file 'nowhere.pth' does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_video_is_an_error_naming_the_file(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    result = run_cli(str(junk), "-o", str(tmp_path / "out"), "--set", "model.device=cpu")
    assert result.exit_code == 1
    assert "junk.mp4" in result.stderr


def test_preview_size_is_even_and_capped():
    assert preview_size(512, 512) == (512, 512)
    assert preview_size(1920, 1080) == (720, 404)
    assert preview_size(641, 361) == (640, 360)
