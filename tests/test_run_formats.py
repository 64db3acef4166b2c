"""`run` on sources that need the documented output rules: odd sizes, rotation, 10 bits, subtitles,
colour matrix and range."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from video_support import make_video

from pipeline.config import load_settings
from pipeline.media import I420Converter, i420_planes, iter_frames, probe
from pipeline.run import run_archive

BT709 = ("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709")
# (video_id, make_video arguments, expected output (width, height, pix_fmt))
SOURCES = {
    "odd": ({"size": "129x97", "pix_fmt": "yuv444p"}, (129, 97, "yuv444p")),
    "rotated": ({"size": "128x96", "rotation": 90}, (96, 128, "yuv420p")),
    "ten_bit": ({"size": "128x96", "pix_fmt": "yuv420p10le"}, (128, 96, "yuv420p10le")),
    "subtitled": ({"size": "128x96", "audio": True, "subtitles": True}, (128, 96, "yuv420p")),
    "bt709": ({"size": "128x96", "source": "testsrc2", "colour": BT709}, (128, 96, "yuv420p")),
    "full_range": ({"size": "128x96", "source": "testsrc2", "colour": ("-color_range", "pc")},
                   (128, 96, "yuvj420p")),
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


@pytest.mark.parametrize("video_id", ["bt709", "full_range"])
def test_output_keeps_the_source_colour(formats_run, video_id):
    """4:2:0 output keeps the decoded pictures (faceless test patterns here): the output is tagged like
    the source and its planes are the source's up to the encoder's loss (the RGB round trip it replaced
    coded BT.709 sources in BT.601, full range ones in limited range, and tagged neither: its planes
    differed by 13.6/7.5/5.3 and 8.8/9.1/9.8 levels here)."""
    results, sources = formats_run
    source, source_colour = decode_i420(Path(sources[video_id]))
    output, output_colour = decode_i420(Path(results[video_id]["output_uri"]))
    y, u, v = (np.abs(a.astype(int) - b).mean() for a, b in zip(planes(output), planes(source), strict=True))
    assert y < 3 and u < 3 and v < 3, (y, u, v)  # 1.3/1.9/1.9 measured at crf 18
    assert output_colour == source_colour


def decode_i420(path: Path):
    convert = I420Converter()
    pictures = np.concatenate([pictures for _, pictures in iter_frames(path, convert=convert)])
    return pictures, convert.colour


def planes(pictures: np.ndarray) -> list[np.ndarray]:
    """The Y, U and V planes of a stack of I420 pictures, each stacked."""
    return [np.stack(plane) for plane in zip(*map(i420_planes, pictures), strict=True)]
