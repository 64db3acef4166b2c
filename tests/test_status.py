"""`dpt-batch status`: a run's progress read back from the records it leaves in OUT (pipeline.status)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.state
from pipeline.catalog import run_record, write_run_record
from pipeline.lock import LOCK_FILE, RunLock
from pipeline.records import ClipTask
from pipeline.state import RunState
from pipeline.status import NoRunError, format_status, read_status

EARLIER_START, START, NOW = 400.0, 1000.0, 1600.0


class Clock:
    """Stands in for the `time` module of pipeline.state, so records carry chosen times."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(pipeline.state, "time", clock)
    return clock


def videos(*names: str) -> list[dict]:
    return [{"video_id": name, "uri": f"/archive/{name}.mp4"} for name in names]


def finish_video(state: RunState, clock: Clock, at: float, video_id: str, frames: int, faces: int,
                 clip_frames: list[int], error: str = "") -> None:  # fmt: skip
    """Record a finished video the way run_archive does: its catalog row and clip rows."""
    clock.now = at
    video = {"video_id": video_id, "uri": f"/archive/{video_id}.mp4", "status": "failed" if error else "done",
             "frames_in": frames, "frames_out": 0 if error else frames, "faces_restored": faces,
             "clips": len(clip_frames), "error": error}  # fmt: skip
    clips, start = [], 0
    for index, count in enumerate(clip_frames):
        failed = error and index == len(clip_frames) - 1  # its last clip is the one that failed
        clips.append({"video_id": video_id, "clip_index": index, "start": start, "end": start + count,
                      "frames": count, "status": "failed" if failed else "done"})  # fmt: skip
        start += count
    state.record_video(f"key-{video_id}", video, clips, [])


def finish_clip(state: RunState, clock: Clock, at: float, work: Path, video_id: str, index: int, count: int,
                frames_in: int, frames: int, faces: int) -> None:  # fmt: skip
    """Record a finished clip of a video in flight, after writing its segment as PasteAndEncode does."""
    clock.now = at
    segment = work / video_id / f"clip_{index:05d}.mp4"
    segment.parent.mkdir(parents=True, exist_ok=True)
    segment.write_bytes(b"\0" * (100 + index))
    state.record_clip(ClipTask(video_id, f"/archive/{video_id}.mp4", "", str(segment.parent),
                               clip_key=f"{index:08d}-k", clip_index=index, clip_count=count,
                               frames_in=frames_in, frames_out=frames, faces=faces, segment=str(segment)))


def half_done_archive(out: str, work: Path, clock: Clock) -> None:
    """An earlier run finished `kept`; the latest (from START) finished `film` and failed `broken`, has
    2 of `long`'s 4 clips, and has not got to `fresh`."""
    state = RunState(out)
    clock.now = EARLIER_START
    state.record_run("run-1", videos("kept"), "settings")
    finish_video(state, clock, 500, "kept", frames=100, faces=10, clip_frames=[100])
    clock.now = START
    state.record_run("run-2", videos("kept", "film", "broken", "long", "fresh"), "settings")
    finish_video(state, clock, 1100, "film", frames=200, faces=20, clip_frames=[120, 80])
    finish_video(state, clock, 1200, "broken", frames=100, faces=5, clip_frames=[50, 50],
                 error="restore: RuntimeError: CUDA error: an illegal memory access")  # fmt: skip
    finish_clip(state, clock, 1300, work, "long", 0, 4, frames_in=120, frames=30, faces=3)
    finish_clip(state, clock, 1400, work, "long", 1, 4, frames_in=120, frames=30, faces=4)


def dead_pid() -> int:
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def test_a_live_run_counts_videos_clips_frames_and_its_eta(tmp_path, clock):
    out = tmp_path / "out"
    half_done_archive(str(out), tmp_path / "work", clock)
    with RunLock(out):  # held by this process, as the run itself holds it
        status = read_status(str(out), now=NOW)
    assert (status.run_id, status.started_at, status.runs) == ("run-2", START, 2)
    assert status.live is True and f"pid {status.pid}" in status.liveness
    assert (status.videos_total, status.videos_done, status.videos_failed) == (5, 2, 1)
    assert (status.videos_pending, status.videos_kept) == (2, 1)
    assert [(v.video_id, v.clips_done, v.clip_count) for v in status.in_flight] == [("long", 2, 4)]
    assert (status.clips_done, status.clips_total) == (2, 4)
    # kept 1, film 2, broken 1 of 2 done; broken's other clip failed
    assert (status.clips_of_finished_done, status.clips_of_finished_failed) == (4, 1)
    # kept 100 + film 200 + broken's encoded clip 50 + long's two clips 60
    assert status.frames_done == 410
    assert status.faces_restored == 10 + 20 + 5 + 7
    # only what finished since START counts towards the throughput: 310 frames in 600 s
    assert status.frames_this_run == 310 and status.seconds_this_run == NOW - START
    assert status.frames_per_second == pytest.approx(310 / 600)
    # long has 60 frames to go; fresh is not probed: the mean of kept, film, broken and long (130)
    assert status.frames_remaining == 190 and status.remaining_estimated
    assert status.eta_s == pytest.approx(190 / (310 / 600))
    assert [(f.video_id, f.error) for f in status.failed] == [
        ("broken", "restore: RuntimeError: CUDA error: an illegal memory access")
    ]


def test_a_run_records_its_videos_beside_its_record_and_status_reads_older_records_too(tmp_path, clock):
    """The run record stays small whatever the archive (its videos go to a Parquet file beside it), and
    runs recorded with their videos inside the record still read back."""
    import pandas as pd

    out = tmp_path / "out"
    state = RunState(str(out))
    clock.now = START
    names = [f"v{index:05d}" for index in range(3000)]
    state.record_run("run-1", videos(*names), "settings")
    record = json.loads((out / "state" / "runs" / "run-1.json").read_text())
    assert record["videos_count"] == 3000 and "videos" not in record
    assert (out / "state" / "runs" / "run-1.json").stat().st_size < 1000
    assert list(pd.read_parquet(out / "state" / "runs" / record["videos_file"]).video_id) == names
    assert read_status(str(out), now=NOW).videos_total == 3000

    older = {"run_id": "run-0", "host": "h", "pid": 1, "started_at": NOW, "settings_key": "settings",
             "videos": videos("a", "b")}  # fmt: skip
    (out / "state" / "runs" / "run-0.json").write_text(json.dumps(older))
    assert read_status(str(out), now=NOW).videos_total == 2


def test_the_report_and_its_json(tmp_path, clock):
    out = tmp_path / "out"
    half_done_archive(str(out), tmp_path / "work", clock)
    with RunLock(out):
        status = read_status(str(out), now=NOW)
    report = "\n".join(format_status(status))
    assert f"{out}: run run-2 (2nd on this output)" in report
    assert "live: pid" in report
    assert "videos: 5 in the run: 2 done, 1 failed, 2 pending (1 in flight); 1 of the finished kept" in report
    clips = "clips: 6 done, 1 failed, 2 pending in videos in flight (and those of 1 video not split yet)"
    assert clips in report
    assert "clips of videos in flight: 2/4 done (long 2/4)" in report
    assert "frames: 410 done, 42 face-frames restored; this run: 310 frames in 10 min 00 s, 0.5 frames/s" in (
        report
    )
    assert "ETA: 6 min 08 s for ~190 frames remaining; an estimate: 1 video not probed yet" in report
    assert "broken                           restore: RuntimeError: CUDA error" in report
    data = json.loads(json.dumps(status.to_dict()))
    assert data["videos_pending"] == 2 and data["live"] is True and data["clips_total"] == 4
    assert data["eta_s"] == pytest.approx(status.eta_s) and data["in_flight"][0]["video_id"] == "long"


def test_a_killed_run_is_not_live_and_its_throughput_stops_with_its_last_record(tmp_path, clock):
    out = tmp_path / "out"
    half_done_archive(str(out), tmp_path / "work", clock)
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "started": 0}))
    status = read_status(str(out), now=NOW + 3600)
    assert status.live is False and "killed or crashed" in status.liveness
    assert status.seconds_this_run == 1400 - START  # long's last clip
    assert status.frames_per_second == pytest.approx(310 / 400)
    assert status.eta_s is None
    assert "remaining: 2 videos (~190 frames), but the run is not live" in format_status(status)


def test_a_run_stopped_without_its_lock_is_not_live(tmp_path, clock):
    out = tmp_path / "out"
    half_done_archive(str(out), tmp_path / "work", clock)
    status = read_status(str(out), now=NOW)
    assert status.live is False and "stopped before it finished" in status.liveness


def test_a_lock_held_on_another_host_leaves_liveness_unknown(tmp_path, clock):
    out = tmp_path / "out"
    half_done_archive(str(out), tmp_path / "work", clock)
    (out / LOCK_FILE).write_text(json.dumps({"host": "render-node-7", "pid": 4242, "started": 0}))
    status = read_status(str(out), now=NOW)
    assert status.live is None and "render-node-7" in status.liveness
    assert status.eta_s == pytest.approx(190 / (310 / 600))
    lines = format_status(status)
    assert lines[1].startswith("live: unknown: its lock names pid 4242 on render-node-7")
    assert any(line.startswith("ETA: 6 min 08 s if it still runs") for line in lines)


def test_a_finished_run_reads_its_end_from_run_json(tmp_path, clock):
    out = tmp_path / "out"
    state = RunState(out)
    clock.now = START
    state.record_run("run-1", videos("a", "b"), "settings")
    finish_video(state, clock, 1100, "a", frames=300, faces=30, clip_frames=[300])
    finish_video(state, clock, 1250, "b", frames=200, faces=0, clip_frames=[200])
    write_run_record(str(out), run_record({"model": {}}, "synthetic:0", START - 20, 1300.0))
    status = read_status(str(out), now=NOW)
    assert status.live is False and status.ended_at == 1300.0 and status.liveness.startswith("ended ")
    assert (status.videos_done, status.videos_pending, status.frames_done) == (2, 0, 500)
    assert status.frames_per_second == pytest.approx(500 / 300)  # up to the end, not to NOW
    assert status.eta_s is None and status.frames_remaining == 0
    assert format_status(status)[-1] == "remaining: nothing, every video of the run is finished"


def test_a_failed_video_being_retried_is_in_flight_again(tmp_path, clock):
    out = tmp_path / "out"
    state = RunState(out)
    clock.now = EARLIER_START
    state.record_run("run-1", videos("film"), "settings")
    finish_video(state, clock, 500, "film", frames=100, faces=4, clip_frames=[60, 40], error="encode: boom")
    clock.now = START
    state.record_run("run-2", videos("film"), "settings")  # --retry-failed
    assert read_status(str(out), now=NOW).videos_failed == 1  # not redone yet: still the failed record
    finish_clip(state, clock, 1100, tmp_path / "work", "film", 0, 2, frames_in=100, frames=60, faces=2)
    status = read_status(str(out), now=NOW)
    assert (status.videos_failed, status.videos_pending, status.frames_done) == (0, 1, 60)
    assert status.frames_remaining == 40 and not status.remaining_estimated


def test_no_eta_before_any_video_is_probed(tmp_path, clock):
    out = tmp_path / "out"
    clock.now = START
    RunState(out).record_run("run-1", videos("a", "b"), "settings")
    with RunLock(out):
        status = read_status(str(out), now=START + 5)
    assert status.frames_remaining is None and status.eta_s is None
    assert "ETA: unknown until a video is probed (2 videos pending)" in format_status(status)


def test_at_most_twenty_failed_videos_are_listed(tmp_path, clock):
    out = tmp_path / "out"
    state = RunState(out)
    names = [f"film{index:02d}" for index in range(25)]
    clock.now = START
    state.record_run("run-1", videos(*names), "settings")
    for index, name in enumerate(names):
        finish_video(state, clock, START + index, name, frames=0, faces=0, clip_frames=[],
                     error="probe: MediaError: zero-byte file")  # fmt: skip
    lines = format_status(read_status(str(out), now=NOW))
    assert "failed videos (25):" in lines
    assert sum(line.startswith("  film") for line in lines) == 20
    assert lines[-1].startswith("  ... and 5 more")


def test_an_output_without_runs_is_named_in_the_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(NoRunError, match=f"no dpt-batch run has written to {folder}"):
            read_status(str(folder))


def test_an_output_behind_s3(moto_s3, tmp_path, clock):
    out, work = "s3://archive/restored", tmp_path / "work"
    half_done_archive(out, work, clock)
    status = read_status(out, now=NOW, work_dir=work)
    assert status.live is None and "elsewhere" in status.liveness  # no lock in this host's work folder
    assert (status.videos_done, status.videos_failed, status.videos_pending) == (2, 1, 2)
    assert status.frames_done == 410
    with RunLock(work):  # a URL output's run holds the lock in its work folder
        assert read_status(out, now=NOW, work_dir=work).live is True
    with pytest.raises(NoRunError, match="s3://archive/elsewhere"):
        read_status("s3://archive/elsewhere", work_dir=work)


@pytest.fixture
def ray_shutdown():
    yield
    import ray

    ray.shutdown()


def test_a_real_run_seen_while_it_runs_and_after(shared_dir, tmp_path, ray_shutdown):
    """Two tiny films and a text file through `run_manifest` (about 20 s), with the status read at each
    finished video, from inside the run, and once it ended."""
    import pandas as pd
    from video_support import make_video

    from pipeline.config import load_settings
    from pipeline.run import run_manifest

    films = [make_video(tmp_path / f"film{index}.mp4", 30) for index in range(2)]
    letter = tmp_path / "letter.mp4"
    letter.write_text("Dear archivist, this is not a film.\n")
    uris = [*map(str, films), str(letter)]
    manifest = pd.DataFrame({"video_id": ["film0", "film1", "letter"], "uri": uris})
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    out = tmp_path / "out"
    seen = []

    def report(line: str) -> None:
        if line.startswith("[1/3]"):
            seen.append(read_status(str(out)))

    run_manifest(manifest, out, settings, report=report)
    (during,) = seen
    assert during.live is True and during.pid == os.getpid()
    assert during.videos_total == 3 and during.videos_done + during.videos_failed == 1
    assert during.videos_pending == 2
    after = read_status(str(out))
    assert after.live is False and after.ended_at is not None and after.run_id == during.run_id
    assert (after.videos_done, after.videos_failed, after.videos_pending) == (2, 1, 0)
    assert after.frames_done == after.frames_this_run == 60
    assert [video.video_id for video in after.failed] == ["letter"] and "letter.mp4" in after.failed[0].error
    assert 0 < after.seconds_this_run < after.now - after.started_at + 1
