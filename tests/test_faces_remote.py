"""Detection served by detector actors (pipeline.faces.remote), as on a GPU cluster, run here on a local
Ray that declares two GPUs it does not have: the detectors run on the CPU, and what is checked is where
Ray puts them and that the faces actors get the same faces as from a detector of their own."""
from __future__ import annotations

import numpy as np
import pytest
from faces_support import footage_paths, mobile_settings, read_clip
from run_support import stage_operators

from pipeline.faces import FaceDetector
from pipeline.faces.remote import RESTORE_GPU_SHARE, RemoteDetector, start_detectors


@pytest.fixture(scope="module")
def two_gpu_ray():
    import ray

    ray.shutdown()
    ray.init(num_cpus=3, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def detectors(two_gpu_ray, shared_dir):
    settings = mobile_settings(shared_dir, detect_max_side=320)
    pool = start_detectors(settings, gpus=2, device="cpu", timeout_s=60)
    yield pool
    pool.stop()


def _gpu_ids(handle) -> list[int]:
    import ray

    return ray.get(handle.__ray_call__.remote(lambda self: [str(i) for i in ray.get_gpu_ids()]))


def test_each_gpu_gets_one_detector_and_one_restoration_actor_beside_it(detectors):
    import ray

    detector_gpus = [_gpu_ids(handle) for handle, _ in detectors.services]
    assert sorted(map(len, detector_gpus)) == [1, 1] and detector_gpus[0] != detector_gpus[1]

    @ray.remote
    class Restorer:
        def gpus(self):
            return [str(i) for i in ray.get_gpu_ids()]

    restorers = [Restorer.options(num_cpus=0, num_gpus=RESTORE_GPU_SHARE,
                                  scheduling_strategy=detectors.scheduling_strategy()).remote()
                 for _ in range(2)]  # fmt: skip
    restore_gpus = ray.get([actor.gpus.remote() for actor in restorers], timeout=60)
    assert sorted(restore_gpus) == sorted(detector_gpus)
    for actor in restorers:
        ray.kill(actor)


def test_a_faces_actor_gets_the_faces_its_own_detector_would_find(detectors, shared_dir):
    clips = [read_clip(path, max_frames=20) for path in footage_paths(shared_dir)[:2]]
    frames = np.concatenate(clips, axis=2)  # two faces a frame
    settings = mobile_settings(shared_dir, detect_max_side=320)
    local = FaceDetector.from_settings(settings).detect(frames)
    remote = RemoteDetector(detectors.services, settings.detect_max_side).detect(frames)
    assert len(remote) == len(local) == len(frames) and sum(map(len, local)) >= len(frames)
    for mine, theirs in zip(remote, local, strict=True):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-5)
    bgr = RemoteDetector(detectors.services, 320).detect(frames[:3, ..., ::-1], image_format="BGR")
    np.testing.assert_allclose(bgr[0][0].box, local[0][0].box, atol=1e-3)


def test_restoration_actors_ask_for_the_share_the_detectors_leave_in_their_bundles(detectors, tmp_path):
    from dataclasses import replace
    from pathlib import Path

    from pipeline.cluster import plan_cluster
    from pipeline.config import load_settings
    from pipeline.context import make_context

    settings = load_settings(Path("configs/smoke.yaml"), ["faces.detector_weights=null"])
    plan = plan_cluster({"CPU": 16, "GPU": 2}, settings)
    context = make_context(settings, plan, work_root=tmp_path, check_detector=False)
    context = replace(context, detectors=detectors)
    _, faces, restore, encode = stage_operators(context)
    assert restore.ray_remote_args["num_gpus"] == RESTORE_GPU_SHARE
    assert restore.ray_remote_args["num_cpus"] == 0
    strategy = restore.ray_remote_args["scheduling_strategy"]
    assert strategy.placement_group == detectors.placement_group
    assert "scheduling_strategy" not in faces.ray_remote_args
    assert faces.ray_remote_args.get("num_gpus", 0) == 0
