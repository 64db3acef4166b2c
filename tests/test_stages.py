"""The run's stages called directly (no Ray): a real clip through faces, restoration and encoding."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_settings
from pipeline.media import ffmpeg_exe, probe, read_frames
from pipeline.run import assemble_video, complete_row
from pipeline.stages import DetectFaces, PasteAndEncode, RestoreFaces, encode_settings_for, split_video


@pytest.fixture(scope="module")
def smoke(shared_dir):
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    return load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])


@pytest.fixture(scope="module")
def face_clip(shared_dir, tmp_path_factory) -> Path:
    """20 frames of a real face clip with a tone: one scene, one face."""
    path = tmp_path_factory.mktemp("clip") / "face.mp4"
    source = shared_dir / "footage" / "Lou_Lang.labeled_faces-5.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(source), "-f", "lavfi", "-i", "sine=f=440",
         "-frames:v", "20", "-shortest", "-c:v", "libx264", "-crf", "10", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return path


def run_stages(rows, smoke):
    for stage in (DetectFaces(smoke), RestoreFaces(smoke), PasteAndEncode(smoke)):
        stage.setup()
        rows = [complete_row(row) for row in stage.process([complete_row(row) for row in rows])]
    return rows


def test_a_face_clip_goes_through_every_stage(face_clip, smoke, tmp_path):
    video = {"video_id": "lou", "uri": str(face_clip)}
    clips = split_video(video, smoke, str(tmp_path / "work"))
    assert [(c["start"], c["end"]) for c in clips] == [(0, 20)]
    rows = run_stages(clips, smoke)
    assert rows[0]["error"] == "", rows[0]["traceback"]
    assert rows[0]["tracks"] == 1 and rows[0]["faces"] == 20
    assert rows[0]["weights"] == "synthetic:0"

    result = assemble_video(video, rows, tmp_path / "videos")
    assert result.video["status"] == "done", result.video["error"]
    out = probe(result.video["output_uri"])
    source = probe(face_clip)
    assert (out.frame_count, out.frame_rate, out.has_audio) == (20, source.frame_rate, True)
    restored, original = read_frames(out.path, 0, 20), read_frames(face_clip, 0, 20)
    box = result.tracks[0]
    assert box["restored"] and box["frames"] == 20
    # synthetic weights restore to noise: the face region must have changed a lot
    assert np.abs(restored[:, 150:350, 150:350].astype(int) - original[:, 150:350, 150:350]).mean() > 20


def test_a_failed_row_passes_every_stage_untouched(smoke, tmp_path):
    row = complete_row({"video_id": "x", "uri": "/missing.mp4", "error": "probe: MediaError: missing"})
    assert run_stages([row], smoke) == [{**row, "weights": "synthetic:0"}]


def test_an_unreadable_video_becomes_one_failed_row(smoke, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    rows = split_video({"video_id": "notes", "uri": str(text)}, smoke, str(tmp_path / "work"))
    assert len(rows) == 1 and rows[0]["error"].startswith("probe: ")
    result = assemble_video({"video_id": "notes", "uri": str(text)}, [complete_row(rows[0])], tmp_path)
    assert result.video["status"] == "failed" and "notes.mp4" in result.video["error"]


def test_encode_rule_for_odd_sizes_and_deep_sources(smoke):
    row = {"width": 641, "height": 360, "bit_depth": 8}
    assert encode_settings_for(row, smoke.encode).pix_fmt == "yuv444p"
    assert encode_settings_for({**row, "width": 640, "bit_depth": 10}, smoke.encode).pix_fmt == "yuv420p10le"
    assert encode_settings_for({**row, "width": 640}, smoke.encode).pix_fmt == "yuv420p"


def test_a_video_behind_an_s3_url_is_copied_once_and_split(face_clip, smoke, tmp_path, moto_s3):
    import fsspec

    fsspec.filesystem("s3").put_file(str(face_clip), "archive/films/lou.mp4")
    video = {"video_id": "lou", "uri": "s3://archive/films/lou.mp4"}
    clips = split_video(video, smoke, str(tmp_path / "work"))
    assert clips[0]["error"] == "" and clips[0]["frames_in"] == 20
    assert clips[0]["source"] == str(tmp_path / "work" / "lou" / "source" / "lou.mp4")
    assert Path(clips[0]["source"]).read_bytes() == face_clip.read_bytes()
    assert clips[0]["uri"] == video["uri"]


def test_crop_artifacts_are_removed_once_consumed(face_clip, smoke, tmp_path):
    clips = split_video({"video_id": "lou", "uri": str(face_clip)}, smoke, str(tmp_path / "work"))
    rows = run_stages(clips, smoke)
    assert rows[0]["error"] == "" and rows[0]["faces"] == 20  # crops were saved, restored and pasted
    assert rows[0]["faces_artifact"] == rows[0]["restored_artifact"] == ""  # consumed: not pointed at
    assert sorted(p.name for p in (tmp_path / "work" / "lou").iterdir() if p.is_file()) == ["clip_00000.mp4"]


def test_out_of_memory_halves_the_windows_per_pass_then_gives_up(smoke):
    """CUDA's allocator cannot run out on this CPU machine: the error it raises is injected into the
    real engine when a pass holds more than two windows."""
    import torch

    stage = RestoreFaces(smoke)
    stage.setup()
    stage.engine.batch_windows = 8
    real, passes = stage.engine.restore_many, []

    def restore_many(clips):
        passes.append(stage.engine.batch_windows)
        if stage.engine.batch_windows > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(clips)

    stage.engine.restore_many = restore_many
    clip = np.random.default_rng(0).integers(0, 255, (12, 512, 512, 3), dtype=np.uint8)
    restored = stage.restore_backing_off([clip])
    assert passes == [8, 4, 2] and stage.engine.batch_windows == 2  # kept for later batches
    np.testing.assert_array_equal(restored[0], real([clip])[0])

    def never_fits(clips):
        raise torch.OutOfMemoryError("CUDA out of memory")

    stage.engine.restore_many = never_fits
    with pytest.raises(torch.OutOfMemoryError):
        stage.restore_backing_off([clip])
    assert stage.engine.batch_windows == 1


def test_one_bad_clip_in_a_restoration_batch_fails_alone(face_clip, smoke, tmp_path):
    clips = split_video({"video_id": "lou", "uri": str(face_clip)}, smoke, str(tmp_path / "work"))
    detector = DetectFaces(smoke)
    detector.setup()
    good = complete_row(detector.process([complete_row(clips[0])])[0])
    broken = tmp_path / "broken.faces.npz"
    broken.write_bytes(b"not an npz")
    bad = {**good, "clip_index": 1, "faces_artifact": str(broken)}
    stage = RestoreFaces(smoke)
    stage.setup()
    out = stage.process([good, bad])
    assert out[0]["error"] == "" and Path(out[0]["restored_artifact"]).is_file()
    assert out[1]["error"].startswith("restore: ") and not out[1]["restored_artifact"]


def test_a_clip_that_keeps_killing_its_worker_fails_after_three_attempts(tmp_path):
    from pipeline.stages import MAX_ATTEMPTS, WorkerDiedError, count_attempt

    row = {"work_dir": str(tmp_path), "run_id": "run1", "clip_index": 0, "clip_key": "00-10-k"}
    assert [count_attempt(row, "faces") for _ in range(MAX_ATTEMPTS)] == [1, 2, 3]
    with pytest.raises(WorkerDiedError, match="died 3 times"):
        count_attempt(row, "faces")
    assert count_attempt(row, "encode") == 1  # per stage
    assert count_attempt({**row, "run_id": "run2"}, "faces") == 1  # a new run starts afresh
    assert count_attempt({**row, "run_id": ""}, "faces") == 0  # rows outside a run are not counted
