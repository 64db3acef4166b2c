"""End to end: `dpt-batch run` on the demo archive with the smoke configuration, on a local Ray."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from run_support import comparable_catalog, kill_run, run_cli, smoke_args, start_run, wait_for

from model.weights import file_sha256
from pipeline.catalog import read_catalog
from pipeline.cli import main
from pipeline.config import load_settings
from pipeline.demo import DEMO_FILMS
from pipeline.media import ffmpeg_exe, probe, read_frames, write_video

FILMS = {film.video_id: film for film in DEMO_FILMS}


def audio_md5(path: str) -> str:
    """md5 of the audio packets as stored (stream copy keeps them bit for bit)."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", path, "-map", "0:a", "-c", "copy", "-f", "md5", "-"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_run_exits_1_and_names_the_bad_items(smoke_run):
    out, result = smoke_run
    assert result.exit_code == 1, result.output
    assert "done 2, failed 2" in result.output
    videos = read_catalog(str(out)).videos.set_index("video_id")
    assert videos.loc["letter", "status"] == "failed" and "letter.mp4" in videos.loc["letter", "error"]
    assert videos.loc["gone", "status"] == "failed" and "not found" in videos.loc["gone", "error"]


@pytest.mark.parametrize("video_id", sorted(FILMS))
def test_outputs_keep_frames_rate_and_audio(smoke_run, demo_archive, video_id):
    out, _ = smoke_run
    source = probe(demo_archive.parent / FILMS[video_id].file_name)
    output = probe(out / "videos" / f"{video_id}.mp4")
    assert (output.frame_count, output.frame_rate) == (source.frame_count, source.frame_rate)
    assert (output.width, output.height) == (source.width, source.height)
    assert output.has_audio == source.has_audio == FILMS[video_id].audio
    if source.has_audio:
        assert audio_md5(output.path) == audio_md5(source.path)


def test_faces_change_and_background_matches_a_plain_reencode(smoke_run, demo_archive, tmp_path):
    out, _ = smoke_run
    film = FILMS["film_a"]
    source_path = demo_archive.parent / film.file_name
    source = read_frames(source_path, 0, film.frame_count)
    restored = read_frames(out / "videos" / "film_a.mp4", 0, film.frame_count)
    settings = load_settings(Path("configs/smoke.yaml"))
    reencoded = read_frames(write_video(tmp_path / "plain.mp4", source, film.rate, settings.encode), 0, 114)

    first_shot, face = film.shots[0], film.shots[0].faces[0]
    inner = np.s_[: first_shot.frames, face.y + face.size // 4 : face.y + 3 * face.size // 4,
                  face.x + face.size // 4 : face.x + 3 * face.size // 4]  # fmt: skip
    assert np.abs(restored[inner].astype(int) - source[inner]).mean() > 20  # noise from synthetic weights
    background = np.s_[: first_shot.frames, :, face.x + face.size + 60 :]
    no_face = np.s_[film.cuts[1] : film.cuts[2]]
    for region in background, no_face:
        # 4:2:0 output keeps the decoded pictures (no RGB round trip), so away from faces the run is at
        # least as close to the source as a plain re-encode through RGB at the same encoder settings.
        plain = psnr(reencoded[region], source[region])
        assert plain >= 35
        assert psnr(restored[region], source[region]) >= plain - 0.5


def test_catalog_holds_every_video_clip_and_track(smoke_run, demo_archive, shared_dir):
    out, _ = smoke_run
    catalog = read_catalog(str(out))
    videos = catalog.videos.set_index("video_id")
    assert sorted(videos.index) == ["film_a", "film_b", "gone", "letter"]
    for video_id, film in FILMS.items():
        row = videos.loc[video_id]
        assert row["status"] == "done" and row["error"] == ""
        assert row["frames_in"] == row["frames_out"] == film.frame_count
        assert row["fps_rational"] == f"{film.rate.numerator}/{film.rate.denominator}"
        assert row["clips"] >= len(film.shots)
        assert row["tracks"] >= sum(film.faces_per_shot)
        face_frames = sum(shot.frames * len(shot.faces) for shot in film.shots)
        assert 0.9 * face_frames <= row["faces_restored"] <= face_frames
        assert row["weights"] == "synthetic:0"
        assert row["collection"] == "dpt-batch demo"  # the manifest's own column, carried through
        assert Path(row["output_uri"]).is_file()
        clips = catalog.clips[catalog.clips.video_id == video_id].sort_values("clip_index")
        assert len(clips) == row["clips"]
        assert clips.start.iloc[0] == 0 and clips.end.iloc[-1] == film.frame_count
        assert (clips.start.iloc[1:].to_numpy() == clips.end.iloc[:-1].to_numpy()).all()
        assert set(clips.scene.diff().dropna()) <= {0, 1}
    cut_starts = set(catalog.clips[catalog.clips.video_id == "film_a"].start)
    assert {cut for cut in FILMS["film_a"].cuts if any(abs(cut - s) <= 1 for s in cut_starts)} == set(
        FILMS["film_a"].cuts
    )
    assert (catalog.tracks.groupby("video_id").size() > 0).all()
    restored, skipped = catalog.tracks[catalog.tracks.restored], catalog.tracks[~catalog.tracks.restored]
    stability = ["warp_error_before", "warp_error_after", "change_before", "change_after", "landmark_jitter",
                 "psnr_restored", "worst_frame", "worst_stretch_start", "sheet", "flipbook"]  # fmt: skip
    assert len(restored) and restored[stability].notna().all().all()  # issue 13: filled for restored tracks
    assert skipped[stability].isna().all().all()
    assert (restored.warp_error_after > restored.warp_error_before).all()  # synthetic weights flicker
    assert restored.worst_frame.between(restored.first_frame, restored.last_frame).all()
    for sheet, book, frames in zip(restored.sheet, restored.flipbook, restored.frames, strict=True):
        assert sheet.startswith("report/pictures/") and Image.open(out / sheet).format == "JPEG"  # written
        assert Image.open(out / book).n_frames == min(16, frames)  # the least stable stretch
    assert catalog.run["weights"] == "synthetic:0"
    detector = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    used = catalog.run["weights_used"]
    assert used["faces.detector_weights"] == f"{detector}: sha256 {file_sha256(detector)}"
    assert catalog.run["config"]["model"]["name"] == "tiny"
    assert not any((out / "work").glob("film_*"))  # work artifacts of finished videos are removed


def test_a_clean_archive_exits_0_and_limit_takes_the_first_videos(
    demo_archive, shared_dir, tmp_path, ray_session
):
    manifest = pd.read_parquet(demo_archive).sort_values("video_id", ascending=False)  # film_b first
    path = tmp_path / "archive.parquet"
    manifest.to_parquet(path)
    result = run_cli("--manifest", str(path), "--output", str(tmp_path / "out"), "--limit", "1",
                     *smoke_args(shared_dir))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(read_catalog(str(tmp_path / "out")).videos.video_id) == ["film_b"]


def test_a_manifest_without_uri_is_refused_before_any_work(tmp_path):
    path = tmp_path / "archive.parquet"
    pd.DataFrame({"path": ["a.mp4"]}).to_parquet(path)
    result = CliRunner().invoke(main, ["run", "--manifest", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "uri" in result.output
    assert not (tmp_path / "out").exists()


def test_a_gpu_setting_without_a_gpu_stops_before_any_work(demo_archive, shared_dir, tmp_path, ray_session):
    out = tmp_path / "out"
    result = run_cli("--manifest", str(demo_archive), "--output", str(out), *smoke_args(shared_dir),
                     "--set", "model.device=cuda")  # fmt: skip
    assert result.exit_code == 2
    assert "model.device is 'cuda' but the Ray cluster has no GPU" in result.output
    assert not out.exists()


def test_offline_without_weights_names_the_file_and_the_fix(demo_archive, tmp_path, monkeypatch, ray_session):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DPT_CACHE_DIR", str(tmp_path / "cache"))
    result = run_cli("--manifest", str(demo_archive), "--output", str(tmp_path / "out"),
                     "--set", "faces.detector=retinaface_mobile0.25")  # fmt: skip
    assert result.exit_code == 2
    assert "net_g_v1.pth" in result.output and "dpt-batch weights download" in result.output


def test_progress_line_counts_clips_of_videos_in_flight():
    from pipeline.records import ClipTask
    from pipeline.run import progress_line

    def clip(video_id: str, index: int, count: int) -> ClipTask:
        return ClipTask(video_id, "", "", "", clip_index=index, clip_count=count)

    pending = {"reel_1": {i: clip("reel_1", i, 40) for i in range(12)}, "reel_2": {3: clip("reel_2", 3, 9)}}
    line = progress_line(30, 2, 5, pending)
    assert line == "... 30 clips done, 2/5 videos; in flight (clips): reel_1 12/40, reel_2 1/9"


def test_a_second_run_on_a_live_output_is_refused(demo_archive, shared_dir, tmp_path, ray_session):
    import json
    import os
    import socket

    from pipeline.lock import LOCK_FILE

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    result = run_cli("--manifest", str(demo_archive), "--output", str(out), *smoke_args(shared_dir))
    assert result.exit_code == 2
    assert "in use by a live run" in result.output
    assert not (out / "videos").exists()


# ---------------------------------------------------------------------------------------------------
# resuming: kill -9 the whole run at each stage, rerun the same command


@pytest.fixture(scope="module")
def resumed_run(smoke_run, archive_with_bad_items, shared_dir, tmp_path_factory, ray_session):
    """The smoke run's archive run again into a new output, killed (kill -9, whole session) while
    writing the catalog (every film and failure durable, the catalog not written), then resumed by the
    same command, in this process. Returns (output, arguments, final exit code and output). A kill in
    the middle of clips (segments half written, others in flight) is test_cluster's lost worker node,
    finished by a rerun."""
    folder = tmp_path_factory.mktemp("resumed")
    out = folder / "out"
    args = ["--manifest", str(archive_with_bad_items), "--output", str(out), *smoke_args(shared_dir)]
    for point in ("catalog",):
        faults = folder / f"faults-{point}"
        faults.mkdir()
        run = start_run(args, {"DPT_FAULT_DIR": str(faults), "DPT_PAUSE_AT": point})
        wait_for(faults / f"paused-{point}", run)
        kill_run(run)
    result = run_cli(*args)  # resumed in this process, on the session's Ray (no new Ray to start)
    return out, args, result.exit_code, result.output


def test_killed_runs_end_with_the_catalog_and_films_of_an_uninterrupted_run(smoke_run, resumed_run):
    baseline, _ = smoke_run
    out, _, code, output = resumed_run
    assert code == 1, output  # the two bad items
    assert "were finished by an earlier run and are kept" in output  # what the killed runs finished
    expected, resumed = comparable_catalog(baseline), comparable_catalog(out)
    for name in expected:
        pd.testing.assert_frame_equal(resumed[name], expected[name], obj=name)
    assert resumed["videos"].video_id.is_unique
    assert not resumed["clips"].duplicated(["video_id", "clip_index"]).any()
    for video_id, film in FILMS.items():
        restored = read_frames(out / "videos" / f"{video_id}.mp4", 0, film.frame_count)
        assert psnr(restored, read_frames(baseline / "videos" / f"{video_id}.mp4", 0, film.frame_count)) >= 50


def test_a_rerun_of_a_finished_output_keeps_everything(resumed_run, tmp_path):
    out, args, _, _ = resumed_run
    films = {path.name: path.stat().st_mtime_ns for path in (out / "videos").iterdir()}
    result = run_cli(*args)
    code, output = result.exit_code, result.output
    assert code == 1, output
    assert "4 videos were finished by an earlier run and are kept (2 failed; --retry-failed" in output
    assert "] film_a:" not in output and "] letter:" not in output  # nothing processed again
    assert {path.name: path.stat().st_mtime_ns for path in (out / "videos").iterdir()} == films


def test_retry_failed_processes_only_the_failed_videos_again(resumed_run, tmp_path):
    import shutil

    out, args, _, _ = resumed_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    args = [copy.as_posix() if arg == str(out) else arg for arg in args]
    result = run_cli(*args, "--retry-failed")
    code, output = result.exit_code, result.output
    assert code == 1, output
    assert "] letter: failed" in output and "] gone: failed" in output
    assert "] film_a:" not in output
    assert "2 videos were finished by an earlier run and are kept" in output


def test_changed_settings_never_reuse_results(resumed_run, archive_with_bad_items, tmp_path):
    import shutil

    out, args, _, _ = resumed_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    manifest = pd.read_parquet(archive_with_bad_items)
    only_film_b = tmp_path / "film_b.parquet"  # the shorter film, to keep the test quick
    manifest[manifest.video_id == "film_b"].reset_index(drop=True).to_parquet(only_film_b)
    swap = {str(out): copy.as_posix(), str(archive_with_bad_items): str(only_film_b)}
    args = [swap.get(arg, arg) for arg in args]
    frames = FILMS["film_b"].frame_count
    before = read_frames(copy / "videos" / "film_b.mp4", 0, frames)
    result = run_cli(*args, "--set", "encode.crf=40")
    code, output = result.exit_code, result.output
    assert code == 0, output
    assert "] film_b: done" in output and "kept" not in output
    after = read_frames(copy / "videos" / "film_b.mp4", 0, frames)
    assert psnr(after, before) < 45  # encoded again, at the new quality


def test_status_reports_a_finished_run(smoke_run):
    out, _ = smoke_run
    result = CliRunner().invoke(main, ["status", str(out)])
    assert result.exit_code == 0, result.output
    assert "not live" in result.output and "2 done, 2 failed, 0 pending" in result.output
    assert "letter" in result.output and "gone" in result.output
    as_json = CliRunner().invoke(main, ["status", str(out), "--json"])
    import json

    assert json.loads(as_json.output)["videos_done"] == 2
