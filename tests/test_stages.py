"""The run's stages called directly (no Ray): a real clip through faces, restoration and encoding."""
from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import unpack_faces
from pipeline.assemble import assemble_video
from pipeline.config import load_settings
from pipeline.context import make_context
from pipeline.media import ffmpeg_exe, probe, read_frames
from pipeline.records import ClipTask, VideoTask
from pipeline.restorer import encode_settings_for
from pipeline.scratch import keep_scratch, scratch_kept
from pipeline.stages import DetectFaces, PasteAndEncode, ProbeVideo, RestoreFaces


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


@pytest.fixture
def context(smoke, tmp_path):
    return make_context(smoke, work_root=tmp_path / "work")


def split_video(video: VideoTask, context) -> list[ClipTask]:
    return ProbeVideo(context).process([video])


def run_stages(clips, context):
    for stage_class in (DetectFaces, RestoreFaces, PasteAndEncode):
        stage = stage_class(context)
        stage.setup()
        clips = stage.process(clips)
    return clips


def test_a_face_clip_goes_through_every_stage(face_clip, context, tmp_path):
    video = VideoTask("lou", str(face_clip))
    clips = split_video(video, context)
    assert [(c.start, c.end) for c in clips] == [(0, 20)]
    assert clips[0].weights == "synthetic:0"
    rows = run_stages(clips, context)
    assert rows[0].error == "", rows[0].traceback
    assert rows[0].tracks == 1 and rows[0].faces == 20

    result = assemble_video(video, rows, tmp_path / "videos")
    assert result.video["status"] == "done", result.video["error"]
    out = probe(result.video["output_uri"])
    source = probe(face_clip)
    assert (out.frame_count, out.frame_rate, out.has_audio) == (20, source.frame_rate, True)
    restored, original = read_frames(out.path, 0, 20), read_frames(face_clip, 0, 20)
    box = result.tracks[0]
    assert box["restored"] and box["frames"] == 20
    # stability before and after (pipeline.faces.stability): a real face moves a little; synthetic
    # weights restore to noise, which flickers far more than the source and changes it a lot
    assert 0 < box["warp_error_before"] < box["change_before"] and 0 < box["landmark_jitter"] < 5
    assert box["warp_error_after"] > 2 * box["warp_error_before"] and box["psnr_restored"] < 20
    assert 0 < box["worst_frame"] < 20 and 0 <= box["worst_stretch_start"] <= 4
    # synthetic weights restore to noise: the face region must have changed a lot
    assert np.abs(restored[:, 150:350, 150:350].astype(int) - original[:, 150:350, 150:350]).mean() > 20


def test_a_failed_clip_passes_every_stage_untouched(context):
    clip = ClipTask("x", "/missing.mp4", "/missing.mp4", "/w", error="probe: MediaError: missing")
    assert run_stages([clip], context) == [clip]


def test_an_unreadable_video_becomes_one_failed_row(context, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    video = VideoTask("notes", str(text))
    rows = split_video(video, context)
    assert len(rows) == 1 and rows[0].error.startswith("probe: ") and rows[0].clip_index == -1
    result = assemble_video(video, rows, tmp_path)
    assert result.video["status"] == "failed" and "notes.mp4" in result.video["error"]


def test_encode_rule_for_odd_sizes_and_deep_sources(smoke):
    assert encode_settings_for(641, 360, 8, smoke.encode).pix_fmt == "yuv444p"
    assert encode_settings_for(640, 360, 10, smoke.encode).pix_fmt == "yuv420p10le"
    assert encode_settings_for(640, 360, 8, smoke.encode).pix_fmt == "yuv420p"


def test_a_video_behind_an_s3_url_is_copied_once_and_split(face_clip, context, tmp_path, moto_s3):
    import fsspec

    fsspec.filesystem("s3").put_file(str(face_clip), "archive/films/lou.mp4")
    video = VideoTask("lou", "s3://archive/films/lou.mp4")
    clips = split_video(video, context)
    assert clips[0].error == "" and clips[0].frames_in == 20
    copy = Path(clips[0].source)
    assert copy.parents[2] == tmp_path / "work" / "lou" and copy.name == "lou.mp4"
    assert copy.read_bytes() == face_clip.read_bytes()
    assert clips[0].uri == video.uri


def test_crops_travel_in_the_record_and_leave_only_the_segment(face_clip, context, tmp_path):
    clips = split_video(VideoTask("lou", str(face_clip)), context)
    found = DetectFaces(context).process(clips)[0]
    faces = unpack_faces(found.face_crops)
    assert list(faces) == [0] and faces[0].crops.shape == (20, 512, 512, 3)  # one track, every frame
    assert "face_crops" not in found.recorded() and "faces:local" in found.nodes
    rows = run_stages(clips, context)
    assert rows[0].error == "" and rows[0].faces == 20  # crops were found, restored and pasted
    assert found.face_flows and "face_flows" not in found.recorded()  # the input's flows, for restoring
    assert rows[0].face_crops == rows[0].face_flows == rows[0].restored_crops == b""  # consumed
    assert rows[0].nodes == "probe:local faces:local restore:local encode:local"
    work = tmp_path / "work" / "lou"
    assert sorted(p.name for p in work.iterdir() if p.is_file() and not p.name.startswith(".")) == [
        "clip_00000.mp4"
    ]


def test_each_node_copies_a_source_once_and_evicts_the_least_recently_used(tmp_path, moto_s3):
    import os

    import fsspec

    from pipeline.artifacts import evict_sources, local_source

    s3 = fsspec.filesystem("s3")
    for name in ("a", "b", "c"):
        s3.pipe_file(f"archive/{name}.mp4", name.encode() * 1000)
    root = tmp_path / "scratch"
    copies = {name: local_source(f"s3://archive/{name}.mp4", f"1000:{name}", root / name) for name in "abc"}
    assert copies["a"].read_bytes() == b"a" * 1000 and copies["a"].parents[2] == root / "a"
    for age, name in enumerate("cab"):  # c least recently used, then a
        os.utime(copies[name], (1000 + age, 1000 + age))
    assert local_source("s3://archive/a.mp4", "1000:a", root / "a") == copies["a"]  # used again: not fetched
    assert evict_sources(root, keep="c", budget=2000) == [copies["b"]]  # c is in use; a just used
    assert copies["c"].is_file() and copies["a"].is_file() and not copies["b"].exists()
    # another version of the object is another copy, never the old one
    s3.pipe_file("archive/a.mp4", b"A" * 1000)
    assert local_source("s3://archive/a.mp4", "1000:A", root / "a").read_bytes() == b"A" * 1000


def test_out_of_memory_halves_the_windows_per_pass_then_gives_up(context):
    """CUDA's allocator cannot run out on this CPU machine: the error it raises is injected into the
    real engine when a pass holds more than two windows."""
    import torch

    stage = RestoreFaces(context)
    stage.setup()
    engine = stage.restorer.engine
    engine.batch_windows = 8
    real, passes = engine.restore_many, []

    def restore_many(clips):
        passes.append(engine.batch_windows)
        if engine.batch_windows > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(clips)

    engine.restore_many = restore_many
    clip = np.random.default_rng(0).integers(0, 255, (12, 512, 512, 3), dtype=np.uint8)
    restored = stage.restorer.restore_backing_off([clip])
    assert passes == [8, 4, 2] and engine.batch_windows == 2  # kept for later batches
    np.testing.assert_array_equal(restored[0], real([clip])[0])

    def never_fits(clips):
        raise torch.OutOfMemoryError("CUDA out of memory")

    engine.restore_many = never_fits
    with pytest.raises(torch.OutOfMemoryError):
        stage.restorer.restore_backing_off([clip])
    assert engine.batch_windows == 1


def test_one_bad_clip_in_a_restoration_batch_fails_alone(face_clip, context, tmp_path):
    clips = split_video(VideoTask("lou", str(face_clip)), context)
    detector = DetectFaces(context)
    detector.setup()
    good = detector.process(clips)[0]
    bad = replace(good, clip_index=1, face_crops=b"not packed arrays")
    stage = RestoreFaces(context)
    stage.setup()
    out = stage.process([good, bad])
    assert out[0].error == "" and list(unpack_faces(out[0].restored_crops)) == [0]
    assert out[1].error.startswith("restore: ValueError: the clip's face crops do not unpack")
    assert not out[1].restored_crops


def test_a_clip_that_keeps_killing_its_worker_fails_after_three_attempts(tmp_path):
    from pipeline.stages import MAX_ATTEMPTS, WorkerDiedError, count_attempt

    item = "clip_00-10-k"
    assert [count_attempt(tmp_path, item, "faces", "run1") for _ in range(MAX_ATTEMPTS)] == [1, 2, 3]
    with pytest.raises(WorkerDiedError, match="died 3 times"):
        count_attempt(tmp_path, item, "faces", "run1")
    assert count_attempt(tmp_path, item, "encode", "run1") == 1  # per stage
    assert count_attempt(tmp_path, item, "faces", "run2") == 1  # a new run starts afresh
    assert count_attempt(tmp_path, item, "faces", "") == 0  # work outside a run is not counted


def test_a_stage_that_adds_an_undeclared_field_is_refused():
    row = ClipTask("x", "x.mp4", "x.mp4", "/w").to_row()
    assert ClipTask.from_row(row) == ClipTask("x", "x.mp4", "x.mp4", "/w")
    with pytest.raises(TypeError, match="no field faces_crops"):
        ClipTask.from_row({**row, "faces_crops": "a.npz"})


def test_in_a_run_the_probe_stage_identifies_each_video_and_hands_back_an_earlier_result_that_stands(
    face_clip, smoke, tmp_path
):
    """The driver hands over only ids and uris: the probe stage works out each source's fingerprint and
    key, and an earlier record under that key comes back as one `kept` record instead of clips."""
    import json
    from dataclasses import asdict

    from pipeline.state import RunState, source_fingerprint, video_key

    out = tmp_path / "out"
    context = make_context(smoke, output=str(out), work_root=tmp_path / "work")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    notes = VideoTask("notes", str(text))
    (failed,) = split_video(notes, context)
    key = video_key(context.settings_key, asdict(smoke.scenes), source_fingerprint(str(text)))
    assert failed.error.startswith("probe: ") and failed.video_key == key and not failed.kept
    result = assemble_video(notes, [failed], tmp_path)
    RunState(out).record_video(key, result.video, result.clips, result.tracks)

    (kept,) = split_video(notes, context)  # the failure stands: kept, not probed again
    assert kept.passes_through and kept.video_key == key and kept.error == ""
    assert json.loads(kept.kept)["video"] == json.loads(json.dumps(result.video))
    assert run_stages([kept], context) == [kept]
    (retried,) = split_video(notes, replace(context, retry_failed=True))
    assert retried.error.startswith("probe: ") and not retried.kept

    lou = VideoTask("lou", str(face_clip))
    clips = split_video(lou, context)
    film = tmp_path / "lou.mp4"
    done = {"video_id": "lou", "status": "done", "output_uri": str(film)}
    RunState(out).record_video(clips[0].video_key, done, [], [])
    assert not split_video(lou, context)[0].kept  # its film is gone: done again
    film.write_bytes(b"film")
    assert split_video(lou, context)[0].kept
    text.write_text("another text")  # the source changed: its key too
    assert not split_video(notes, context)[0].kept


def test_a_stage_actor_keeps_opencvs_threads_to_the_cpus_it_asked_for(context):
    """Ray gives torch OMP_NUM_THREADS; OpenCV's pool would be as wide as the node in every actor."""
    import cv2

    from pipeline.execute import StageActor

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        StageActor(PasteAndEncode, context)
        assert cv2.getNumThreads() == max(1, int(PasteAndEncode.resources(context).cpus)) < 4
    finally:
        cv2.setNumThreads(before)
        keep_scratch(False)  # what else the actor set in this process, undone for the other tests


BATCHES = """
import ctypes, json, resource, sys
import numpy as np
from pipeline.execute import keep_freed_memory

kept = keep_freed_memory() if sys.argv[1] == "kept" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(7):  # a batch: three 12 MB layer outputs alive at once, written, then all freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(12 << 20) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, 12 << 20)
    for block in blocks:
        libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": float(np.median(faults[1:]))}))
"""


@pytest.mark.skipif(not hasattr(os, "confstr") or "glibc" not in os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="malloc's thresholds are glibc's")  # fmt: skip
def test_a_stage_actor_keeps_the_memory_it_frees_unless_its_user_set_mallocs_own(context, monkeypatch):
    """The detector allocates its input and each layer's output anew for every batch: by default glibc
    gives those blocks back to the kernel and faults them in again, zeroed, on the next batch; in a
    stage's actor they are reused. Where the user set malloc's own thresholds, those stay.

    The batches are malloc's own blocks, sized as the detector's at 1080p: the detector's real batches
    fault in a number of pages that glibc's adaptive thresholds make vary from run to run (its median
    batch faulted 0-21k pages by default, 0 kept), these the same number every run (about 9.2k by
    default, 0 kept)."""
    import json
    import sys

    from pipeline import execute

    def detections(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", BATCHES, mode], capture_output=True, text=True,
                              check=True)  # fmt: skip
        return json.loads(done.stdout)

    default, kept = detections("default"), detections("kept")
    assert kept["kept"] is True and default["kept"] is None
    # the median batch after the first: by default the heap's free top (36 MB, over twice glibc's adapted
    # threshold) is trimmed and faulted in again, kept it stays
    assert kept["faults"] * 4 < default["faults"]

    execute.StageActor(PasteAndEncode, context)
    assert execute.freed_memory_kept()
    assert scratch_kept()  # and the clip-sized arrays reuse the memory of the last clip's
    keep_scratch(False)
    users = (("MALLOC_TRIM_THRESHOLD_", "1048576"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2"))
    for name, value in users:
        with monkeypatch.context() as patched:
            patched.setenv(name, value)
            assert execute._set_malloc_thresholds() is False  # the user's choice stays
