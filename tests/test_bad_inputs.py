"""The bad-input matrix through the stages (no Ray): each item ends as one failed row naming its cause,
or as done with every source frame encoded once."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import BadInput, build_bad_inputs, unprivileged_command

from pipeline.assemble import VideoResult, assemble_video
from pipeline.config import load_settings
from pipeline.context import make_context
from pipeline.media import MediaError, ffmpeg_exe, probe, read_frames
from pipeline.records import ClipTask, VideoTask
from pipeline.scenes import Clip, split_scenes
from pipeline.stages import DetectFaces, PasteAndEncode, ProbeVideo, RestoreFaces

REPOSITORY = Path(__file__).resolve().parents[1]
FAILING = ("missing", "zero_byte", "letter", "truncated", "truncated_index", "truncated_mkv", "audio_only")
HANDLED = ("one_frame", "vfr_rotated", "ten_bit", "odd_size")
SPLIT_AS_UNPRIVILEGED = """
import json, sys
from pathlib import Path
from pipeline.config import load_settings
from pipeline.context import make_context
from pipeline.records import VideoTask
from pipeline.stages import ProbeVideo
video_id, uri, work_root, *overrides = sys.argv[1:]
settings = load_settings(Path("configs/smoke.yaml"), overrides)
context = make_context(settings, work_root=work_root)
clips = ProbeVideo(context).process([VideoTask(video_id, uri)])
print(json.dumps([clip.error for clip in clips]))
"""


@pytest.fixture(scope="module")
def matrix(shared_dir, tmp_path_factory) -> dict[str, BadInput]:
    items = build_bad_inputs(tmp_path_factory.mktemp("bad-inputs"), shared_dir / "footage")
    return {item.video_id: item for item in items}


@pytest.fixture(scope="module")
def smoke_overrides(shared_dir) -> list[str]:
    # min_track_len=1: the one-frame face is restored too (the engine pads a clip to a whole window)
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    return [f"faces.detector_weights={weights}", "faces.min_track_len=1"]


@pytest.fixture(scope="module")
def smoke(smoke_overrides):
    return load_settings(Path("configs/smoke.yaml"), smoke_overrides)


def split(item: BadInput, smoke, work_root: Path) -> list[ClipTask]:
    context = make_context(smoke, work_root=work_root)
    return ProbeVideo(context).process([VideoTask(item.video_id, str(item.path))])


def cause(error: str, item: BadInput) -> str:
    """The error in lower case without the file's path (whose name may contain the expected words)."""
    return error.replace(str(item.path), "<file>").lower()


def test_the_matrix_is_the_one_these_tests_cover(matrix):
    failing = {i for i, item in matrix.items() if item.expected_status == "failed" and not item.unreadable}
    assert failing == set(FAILING)
    assert {i for i, item in matrix.items() if item.expected_status == "done"} == set(HANDLED)
    assert [i for i, item in matrix.items() if item.unreadable] == ["unreadable"]


@pytest.mark.parametrize("video_id", FAILING)
def test_a_bad_file_becomes_one_failed_row_that_names_it_and_the_cause(matrix, smoke, tmp_path, video_id):
    item = matrix[video_id]
    rows = split(item, smoke, tmp_path / "work")
    assert len(rows) == 1, rows
    error = rows[0].error
    assert error.startswith("probe: ") and item.path.name in error
    assert item.error_contains in cause(error, item), error

    result = assemble_video(VideoTask(video_id, str(item.path)), rows, tmp_path / "videos")
    assert (result.video["status"], result.video["error"]) == ("failed", error)
    assert result.clips == [] and not (tmp_path / "videos").exists()


def test_an_unreadable_file_fails_with_permission_denied(matrix, smoke_overrides, tmp_path):
    item = matrix["unreadable"]
    try_read = unprivileged_command([sys.executable, "-c", f"open({str(item.path)!r}, 'rb')"])
    attempt = subprocess.run(try_read, capture_output=True, text=True)
    if "PermissionError" not in attempt.stderr:
        assert attempt.returncode != 0, f"{try_read} read a mode 000 file: permissions are not enforced"
        pytest.skip(f"cannot run a process without root's file capabilities: {attempt.stderr.strip()}")

    command = [sys.executable, "-c", SPLIT_AS_UNPRIVILEGED, item.video_id, str(item.path), str(tmp_path),
               *smoke_overrides]  # fmt: skip
    done = subprocess.run(unprivileged_command(command), capture_output=True, text=True, cwd=REPOSITORY)
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout)
    assert len(errors) == 1 and errors[0].startswith("probe: ") and item.path.name in errors[0]
    assert item.error_contains in cause(errors[0], item), errors[0]


@dataclass
class Restored:
    """A handled item after split_video, the three stages and assembly."""

    clips: list[dict]
    rows: list[dict]
    result: VideoResult


@pytest.fixture(scope="module")
def restored(matrix, smoke, tmp_path_factory) -> Callable[[str], Restored]:
    """Runs an item through the stages once per module (restoration is the slow part) and keeps the rows."""
    work_root = tmp_path_factory.mktemp("work")
    context = make_context(smoke, work_root=work_root)
    stages = (DetectFaces(context), RestoreFaces(context), PasteAndEncode(context))
    for stage in stages:
        stage.setup()
    done: dict[str, Restored] = {}

    def restore(video_id: str) -> Restored:
        if video_id not in done:
            item, folder = matrix[video_id], tmp_path_factory.mktemp(video_id)
            rows = clips = split(item, smoke, work_root)
            for stage in stages:
                rows = stage.process(rows)
            result = assemble_video(VideoTask(video_id, str(item.path)), rows, folder / "videos")
            done[video_id] = Restored([c.to_row() for c in clips], [r.to_row() for r in rows], result)
        return done[video_id]

    return restore


@pytest.mark.parametrize("video_id", HANDLED)
def test_a_difficult_video_is_restored_with_every_frame(matrix, restored, video_id):
    source = probe(matrix[video_id].path)
    run = restored(video_id)
    assert [row["error"] for row in run.clips] == [""] * len(run.clips)
    assert run.clips[0]["frames_in"] == source.frame_count
    bounds = [(row["start"], row["end"]) for row in run.clips]
    assert bounds[0][0] == 0 and bounds[-1][1] == source.frame_count
    assert all(end == next_start for (_, end), (next_start, _) in zip(bounds, bounds[1:], strict=False))

    assert [row["error"] for row in run.rows] == [""] * len(run.rows), run.rows[0].get("traceback")
    assert sum(row["faces"] for row in run.rows) > 0, "the face was not restored: the case is not exercised"
    assert [row["frames_out"] for row in run.rows] == [end - start for start, end in bounds]
    assert sum(probe(row["segment"]).frame_count for row in run.rows) == source.frame_count

    assert run.result.video["status"] == "done", run.result.video["error"]
    output = probe(run.result.video["output_uri"])
    assert output.frame_count == run.result.video["frames_out"] == source.frame_count
    assert (output.width, output.height) == (source.width, source.height)
    assert output.has_audio == source.has_audio


def test_a_one_frame_video_is_one_clip_of_one_frame(matrix, smoke, restored):
    assert split_scenes(matrix["one_frame"].path, smoke.scenes) == [Clip(index=0, start=0, end=1, scene=0)]
    assert restored("one_frame").rows[0]["faces"] == 1  # restored through a window padded from one frame


def test_a_variable_rate_video_keeps_every_frame_at_its_mean_rate(matrix, restored):
    """No frame is dropped or repeated; the output plays them at the constant rate frame_count / duration,
    so it lasts as long as the source although its frame times are evened out."""
    item = matrix["vfr_rotated"]
    info = probe(item.path)
    assert info.variable_frame_rate and info.rotation == 90 and (info.width, info.height) == (128, 192)
    packet_times = stream_packet_times(item.path)
    duration = packet_times[-1][0] + packet_times[-1][1] - packet_times[0][0]
    assert info.frame_count == len(packet_times) == 20
    assert info.frame_rate == pytest.approx(info.frame_count / duration, rel=1e-3)
    assert info.duration_s == pytest.approx(duration, rel=1e-3)
    every_frame = ffmpeg_decode_every_frame(item.path, 128, 192)
    np.testing.assert_array_equal(read_frames(item.path, 0, 20), every_frame)

    output = probe(restored("vfr_rotated").result.video["output_uri"])
    assert not output.variable_frame_rate and output.frame_count == 20
    assert output.frame_rate == info.frame_rate
    assert output.duration_s == pytest.approx(duration, rel=1e-3)
    assert output.rotation == 0 and (output.width, output.height) == (128, 192)


def test_decoding_a_truncated_file_fails_in_plain_words(matrix):
    with pytest.raises(MediaError, match=r"truncated\.mp4: .*(truncated|corrupt)"):
        read_frames(matrix["truncated"].path, 0, 1)


def stream_packet_times(path: Path) -> list[tuple[Fraction, Fraction]]:
    """(time, duration) in seconds of each packet of the first video stream, by ffmpeg's framecrc."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path),
               "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]  # fmt: skip
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    timebase = Fraction(next(line for line in lines if line.startswith("#tb 0:")).split(":", 1)[1].strip())
    packets = [line.split(",") for line in lines if line and not line.startswith("#")]
    return sorted((int(fields[2]) * timebase, int(fields[3]) * timebase) for fields in packets)


def ffmpeg_decode_every_frame(path: Path, width: int, height: int) -> np.ndarray:
    """TxHxWx3 RGB frames as ffmpeg decodes them, each frame once (no rate conversion)."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
