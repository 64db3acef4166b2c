"""A cluster smaller than a CPU per stage actor runs a job to its end, and a run that stops making
progress says what it waits for."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_settings
from pipeline.run import run_archive
from pipeline.watch import StallWatch, describe_stall


@pytest.fixture
def one_cpu_ray():
    import ray

    ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_one_cpu_ray_runs_a_smoke_job_to_the_end(one_cpu_ray, demo_archive, shared_dir, tmp_path):
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    films = pd.read_parquet(demo_archive)
    videos = [{"video_id": "film_b", "uri": films.set_index("video_id").loc["film_b", "uri"]}]
    lines: list[str] = []
    summary = run_archive(videos, tmp_path / "out", settings, report=lines.append)
    assert [video["status"] for video in summary.videos] == ["done"], lines
    assert summary.videos[0]["frames_out"] == 50


def test_a_stalled_run_says_what_it_waits_for(one_cpu_ray, tmp_path):
    ray = one_cpu_ray

    @ray.remote(num_cpus=1)
    class Busy:
        def ping(self) -> int:
            return 1

    holder = Busy.remote()
    ray.get(holder.ping.remote())
    waiting = Busy.remote()  # noqa: F841 (never starts: the one CPU is taken)
    marker = tmp_path / "film" / ".attempts-run1-faces-clip_00000000-00000020-abc"
    marker.parent.mkdir()
    marker.write_text("1")
    time.sleep(1)

    line = describe_stall(330, tmp_path, "run1")
    assert line.startswith("no clip has come in for 5.5 min")
    assert "clips started per stage: faces 1" in line
    assert "actors waiting to start (for resources the cluster lacks?): 1 x " in line and "Busy" in line
    assert "free: 0 of 1 CPU" in line

    reports: list[str] = []
    with StallWatch(lambda idle: describe_stall(idle, tmp_path, "run1"), reports.append, after_s=0.3,
                    every_s=0.05) as watch:  # fmt: skip
        time.sleep(0.2)
        watch.progress()
        time.sleep(0.2)
        assert reports == []  # progress came in time
        time.sleep(0.5)
    assert reports and reports[0].startswith("no clip has come in for 0.0 min")
