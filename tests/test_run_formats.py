"""`run` on sources that need the documented output rules: odd sizes, rotation, 10 bits, subtitles."""
from __future__ import annotations

from pathlib import Path

import pytest
from video_support import make_video

from pipeline.config import load_settings
from pipeline.media import probe
from pipeline.run import run_archive

# (video_id, make_video arguments, expected output (width, height, pix_fmt))
SOURCES = {
    "odd": ({"size": "129x97", "pix_fmt": "yuv444p"}, (129, 97, "yuv444p")),
    "rotated": ({"size": "128x96", "rotation": 90}, (96, 128, "yuv420p")),
    "ten_bit": ({"size": "128x96", "pix_fmt": "yuv420p10le"}, (128, 96, "yuv420p10le")),
    "subtitled": ({"size": "128x96", "audio": True, "subtitles": True}, (128, 96, "yuv420p")),
}


@pytest.fixture(scope="module")
def formats_run(shared_dir, tmp_path_factory):
    import ray

    folder = tmp_path_factory.mktemp("formats")
    videos = []
    for video_id, (arguments, _) in SOURCES.items():
        suffix = ".mkv" if arguments.get("subtitles") else ".mp4"
        path = make_video(folder / f"{video_id}{suffix}", 30, **arguments)
        videos.append({"video_id": video_id, "uri": str(path)})
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    summary = run_archive(videos, folder / "out", settings)
    yield {video["video_id"]: video for video in summary.videos}, {v["video_id"]: v["uri"] for v in videos}
    ray.shutdown()


@pytest.mark.parametrize("video_id", sorted(SOURCES))
def test_output_follows_the_documented_rule(formats_run, video_id):
    results, sources = formats_run
    video = results[video_id]
    assert video["status"] == "done", video["error"]
    source, output = probe(sources[video_id]), probe(video["output_uri"])
    assert source.frame_count == 30
    assert (output.frame_count, output.frame_rate) == (source.frame_count, source.frame_rate)
    assert (output.width, output.height, output.pix_fmt) == SOURCES[video_id][1]
    assert output.rotation == 0  # frames are written upright; no rotation metadata to apply twice
    assert (output.audio_streams, output.subtitle_streams) == (source.audio_streams, source.subtitle_streams)
