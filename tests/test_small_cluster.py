"""A run that stops making progress says what it waits for. (A run on a Ray of one CPU, smaller than a
CPU per stage actor, goes to its end: test_run_context.)"""
from __future__ import annotations

import time

import pytest

from pipeline.watch import StallWatch, describe_stall


@pytest.fixture
def one_cpu_ray():
    import ray

    ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


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
