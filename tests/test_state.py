"""Keys and records of finished work (pipeline.state): what makes a result reusable, and what not."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.cluster import LOCAL_PLAN
from pipeline.config import load_settings
from pipeline.context import make_context
from pipeline.records import ClipTask
from pipeline.state import RunState, clip_key, settings_key, source_fingerprint, video_key


@pytest.fixture
def settings():
    return load_settings(Path("configs/smoke.yaml"), ["faces.detector_weights=null"])


def key_of(settings, plan=LOCAL_PLAN) -> str:
    """The settings key of a run with these settings on a cluster like `plan` (CPU only by default)."""
    return make_context(settings, plan, work_root="/unused", check_detector=False).settings_key


def changed(settings, section: str, **values):
    return replace(settings, **{section: replace(getattr(settings, section), **values)})


def test_settings_that_change_pixels_change_the_key(settings):
    key = key_of(settings)
    assert key_of(settings) == key
    assert key_of(changed(settings, "model", weights="synthetic:1")) != key
    for section, name, value in [("encode", "crf", 30), ("faces", "score_threshold", 0.5),
                                 ("model", "precision", "bf16"), ("faces", "smoothing", "none"),
                                 ("faces", "mode", "aligned")]:  # fmt: skip
        assert key_of(changed(settings, section, **{name: value})) != key, (section, name)


def test_auto_precision_is_keyed_as_the_precision_it_takes_on_each_pool(settings):
    """auto restores in fp32 on CPU actors (the same pixels as an explicit fp32) and in bf16 on GPU
    actors (other pixels): a film half restored on CPUs never mixes its clips with bf16 ones."""
    gpu_plan = replace(LOCAL_PLAN, gpus=1, restore_on_gpu=True)
    auto = changed(settings, "model", precision="auto")
    assert key_of(auto) == key_of(changed(settings, "model", precision="fp32"))
    assert make_context(auto, gpu_plan, work_root="/unused", check_detector=False).restore_precision == "bf16"
    assert key_of(auto, gpu_plan) != key_of(auto)
    assert key_of(auto, gpu_plan) == key_of(changed(settings, "model", precision="bf16"), gpu_plan)
    with pytest.raises(ValueError, match="takes effect"):
        settings_key(auto, "synthetic:0", "auto")


def test_devices_batch_sizes_and_scenes_leave_the_settings_key_alone(settings):
    key = key_of(settings)
    moved = replace(
        settings,
        model=replace(settings.model, device="cpu", batch_windows=8),
        faces=replace(settings.faces, detect_batch_size=3),
        scenes=replace(settings.scenes, max_clip_frames=10),
    )
    assert key_of(moved) == key
    assert video_key(key, {"max_clip_frames": 10}, "1:2") != video_key(key, {"max_clip_frames": 48}, "1:2")


def test_detection_on_the_gpus_is_keyed_and_a_cpu_run_keeps_its_key(settings):
    """Detection in float16 on a GPU may move a landmark by a fraction of a pixel, so it keys apart; on
    CPUs faces.device (auto or cpu) keys as before the setting existed."""
    from pipeline.cluster import plan_cluster

    cpu_key = key_of(settings)
    assert key_of(changed(settings, "faces", device="cpu")) == cpu_key
    gpus = plan_cluster({"CPU": 8, "GPU": 1}, settings)
    assert gpus.detect_on_gpu
    on_cpu = plan_cluster({"CPU": 8, "GPU": 1}, changed(settings, "faces", device="cpu"))
    assert key_of(settings, gpus) != key_of(changed(settings, "faces", device="cpu"), on_cpu)


def test_detector_weights_count_by_content_not_path(settings, tmp_path):
    first, second, other = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "c.pth"
    first.write_bytes(b"weights")
    second.write_bytes(b"weights")
    other.write_bytes(b"other weights")

    def key(path):
        return key_of(changed(settings, "faces", detector_weights=str(path)))

    assert key(first) == key(second) != key(other)
    with pytest.raises(ValueError, match="sha256 of faces.detector_weights"):
        settings_key(changed(settings, "faces", detector_weights=str(first)), "w", "fp32")


def test_a_changed_source_file_changes_its_fingerprint(tmp_path):
    path = tmp_path / "film.mp4"
    path.write_bytes(b"one")
    before = source_fingerprint(str(path))
    path.write_bytes(b"other content")
    assert source_fingerprint(str(path)) != before
    assert source_fingerprint(str(tmp_path / "gone.mp4")) == ""


def test_clip_keys_hold_the_range_readably():
    assert clip_key("k", "1:2", 30, 58).startswith("00000030-00000058-")
    assert clip_key("k", "1:2", 30, 58) != clip_key("k", "1:2", 30, 59) != clip_key("k", "1:3", 30, 59)


def test_a_clip_record_stands_only_while_its_segment_is_whole(tmp_path):
    state = RunState(tmp_path / "out")
    segment = tmp_path / "work" / "clip.mp4"
    segment.parent.mkdir()
    segment.write_bytes(b"0123456789")
    clip = ClipTask("film", "film.mp4", "film.mp4", str(segment.parent), clip_key="00000000-00000010-abc",
                    segment=str(segment), faces=3)  # fmt: skip
    state.record_clip(clip)
    assert state.finished_clips("film") == {clip.clip_key: clip}
    assert state.finished_clips("other") == {}
    segment.write_bytes(b"01234")  # cut short behind the record's back
    assert state.finished_clips("film") == {}
    segment.unlink()
    assert state.finished_clips("film") == {}
    # a run's segment is published under OUT/state/segments, and checked there by one listing
    published = Path(state.segment_location("film", clip.clip_key))
    published.parent.mkdir(parents=True)
    published.write_bytes(b"0123456789")
    clip = replace(clip, segment=str(published))
    state.record_clip(clip)
    assert state.finished_clips("film") == {clip.clip_key: clip}
    published.write_bytes(b"012")
    assert state.finished_clips("film") == {}
    state.forget_clips("film")
    assert not (tmp_path / "out" / "state" / "clips" / "film").exists()
    assert not published.parent.exists()


def test_video_records_round_trip_and_leave_no_temporary_files(tmp_path):
    state = RunState(tmp_path / "out")
    video = {"video_id": "film", "status": "done", "output_uri": "x.mp4"}
    state.record_video("key1", video, [{"clip_index": 0}], [])
    state.record_video("key2", video, [{"clip_index": 0}, {"clip_index": 1}], [])
    record = state.finished_videos()["film"]
    assert record.pop("finished_at") > 0
    clips = [{"clip_index": 0}, {"clip_index": 1}]
    assert record == {"key": "key2", "video": video, "clips": clips, "tracks": []}
    folder = tmp_path / "out" / "state" / "videos"
    assert [p.name for p in folder.iterdir()] == ["film.json"]
    (folder / "broken.json").write_text("{")  # a torn record from elsewhere is ignored, not fatal
    assert list(state.finished_videos()) == ["film"]
    assert json.loads((folder / "film.json").read_text())["key"] == "key2"


def test_records_live_behind_urls_too(moto_s3, tmp_path):
    import fsspec
    state = RunState("s3://archive/run")
    state.record_video("k", {"video_id": "film", "status": "failed"}, [], [])
    assert state.finished_videos()["film"]["key"] == "k"
    segment = state.segment_location("film", "c")
    assert segment == "s3://archive/run/state/segments/film/c.mp4"
    fsspec.filesystem("s3").pipe_file(segment, b"data")
    state.record_clip(ClipTask("film", "f.mp4", "f.mp4", str(tmp_path), clip_key="c", segment=segment))
    assert list(state.finished_clips("film")) == ["c"]
    fsspec.filesystem("s3").pipe_file(segment, b"dat")
    assert state.finished_clips("film") == {}
