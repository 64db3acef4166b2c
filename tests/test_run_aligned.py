"""`faces.mode=aligned` as a run setting: aligned face clips restored whole, every frame and the sound
kept; a video whose frames are not square fails alone, saying what aligned mode expects."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.media import ffmpeg_exe, probe
from pipeline.run import run_archive


@pytest.fixture(scope="module")
def aligned_run(shared_dir, tmp_path_factory):
    import ray

    folder = tmp_path_factory.mktemp("aligned")
    face = folder / "face.mp4"  # an aligned 512x512 face clip with a tone
    footage = shared_dir / "footage" / "Lou_Lang.labeled_faces-5.mp4"
    tone = ["-f", "lavfi", "-i", "sine=f=440", "-shortest"]
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(footage), *tone, "-frames:v", "24",
                    "-c:v", "libx264", "-crf", "10", "-c:a", "aac", str(face)], check=True)  # fmt: skip
    wide = folder / "wide.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
                    "-frames:v", "12", str(wide)], check=True)  # fmt: skip
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    overrides = [f"faces.detector_weights={weights}", "faces.mode=aligned"]
    settings = load_settings(Path("configs/smoke.yaml"), overrides)
    videos = [{"video_id": "face", "uri": str(face)}, {"video_id": "wide", "uri": str(wide)}]
    summary = run_archive(videos, folder / "out", settings, report=lambda line: None)
    yield {video["video_id"]: video for video in summary.videos}, summary, face
    ray.shutdown()


def test_an_aligned_clip_keeps_its_frames_rate_and_sound(aligned_run):
    videos, summary, face = aligned_run
    video = videos["face"]
    assert video["status"] == "done", video["error"]
    source, output = probe(face), probe(video["output_uri"])
    assert (output.frame_count, output.frame_rate, output.has_audio) == (
        source.frame_count, source.frame_rate, True)  # fmt: skip
    assert video["faces_restored"] == source.frame_count  # every frame is the face
    tracks = [track for track in summary.tracks if track["video_id"] == "face"]
    assert sum(track["frames"] for track in tracks) == source.frame_count
    assert all(track["restored"] for track in tracks)


def test_a_video_that_is_not_square_fails_saying_what_aligned_mode_expects(aligned_run):
    video = aligned_run[0]["wide"]
    assert video["status"] == "failed" and video["output_uri"] == ""
    assert "wide.mp4 is 320x240: faces.mode=aligned expects square frames" in video["error"]
    assert video["error"].startswith("probe: ")
