"""On a Ray of one CPU: a run that stops making progress says what it waits for, and a restoration actor
on CPUs takes the node's CPUs that Ray counts. (A run on a Ray of one CPU, smaller than a CPU per stage
actor, goes to its end: test_run_context.)"""
from __future__ import annotations

import os
import time
from pathlib import Path

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


def test_a_restoration_actor_on_cpus_runs_a_thread_per_cpu_of_its_node_or_as_set(one_cpu_ray, shared_dir):
    """Ray counts one CPU on this node (however many cores the machine has): by default the actor's torch
    runs one thread; cluster.restore_cpu_threads sets another number, over what Ray gives the actor. A
    process that is not a Ray actor keeps its own threads."""
    from pipeline.config import load_settings
    from pipeline.context import make_context
    from pipeline.stages import RestoreFaces, current_node_id, node_cpus

    ray = one_cpu_ray

    @ray.remote(num_cpus=0.5)
    class Restoration:
        def __init__(self, context) -> None:
            RestoreFaces(context).setup()

        def threads(self) -> tuple[int, str]:
            import torch

            return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "")

    seen = {}
    for threads in (0, 3):
        weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"  # wherever DPT_SHARED_DIR puts them
        overrides = ["faces.mode=aligned", f"faces.detector_weights={weights}",
                     f"cluster.restore_cpu_threads={threads}"]
        config = load_settings(Path("configs/smoke.yaml"), overrides)
        context = make_context(config)
        assert context.restore_device == "cpu"
        seen[threads] = ray.get(Restoration.remote(context).threads.remote())
    assert seen[0] == (1, "1")  # Ray's one CPU of the node, whatever the machine's cores
    assert seen[3] == (3, "1")  # as set, over the one thread Ray gives an actor of half a CPU
    assert node_cpus(current_node_id()) == 1
    assert node_cpus("no-such-node") == 1

    import torch

    before = torch.get_num_threads()
    try:  # a process that runs the stage itself (bench-cost's one thread per stage) keeps its threads
        torch.set_num_threads(1)
        RestoreFaces(context).setup()  # the last context: 3 threads, were it an actor
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
