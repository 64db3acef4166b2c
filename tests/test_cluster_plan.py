"""How the stages map onto a cluster's resources: pool sizes, and GPUs only for restoration."""
from __future__ import annotations

from pathlib import Path

import pytest
from run_support import stage_operators

from pipeline.cluster import plan_cluster
from pipeline.config import load_settings
from pipeline.context import make_context
from pipeline.execute import build_dataset
from pipeline.records import VideoTask


def settings(*overrides: str):
    return load_settings(Path("configs/smoke.yaml"), ["faces.detector_weights=null", *overrides])


def test_pools_are_sized_from_the_cluster_by_default():
    """16 CPUs and 2 GPUs: the GPUs' restoration and detector actors leave 12 CPUs, shared by the faces
    and encode pools in proportion to their cost per frame (pipeline.costs); detection on the CPUs makes
    the faces pool the larger."""
    from pipeline.costs import frame_costs

    plan = plan_cluster({"CPU": 16, "GPU": 2}, settings())
    assert plan.restore_on_gpu and plan.detect_on_gpu
    assert (plan.faces_actors, plan.restore_actors, plan.encode_actors) == ((1, 2), (1, 2), (1, 8))
    costs = frame_costs(settings(), detect_on_gpu=True)
    assert plan.faces_actors[1] / plan.encode_actors[1] == pytest.approx(costs.faces / costs.encode, rel=0.3)
    resnet_on_cpus = settings("faces.device=cpu", "faces.detector=retinaface_resnet50")
    on_cpus = plan_cluster({"CPU": 16, "GPU": 2}, resnet_on_cpus)
    assert on_cpus.faces_actors[1] > on_cpus.encode_actors[1]
    assert on_cpus.faces_actors[1] + on_cpus.encode_actors[1] <= 14
    plan = plan_cluster({"CPU": 4}, settings())
    assert not plan.restore_on_gpu and plan.restore_actors == (1, 1)


def test_pool_sizes_from_the_settings_win():
    plan = plan_cluster(
        {"CPU": 64, "GPU": 8},
        settings("cluster.faces_max_actors=12", "cluster.restore_min_actors=8", "cluster.encode_min_actors=2",
                 "cluster.encode_max_actors=6"),
    )  # fmt: skip
    assert (plan.faces_actors, plan.restore_actors, plan.encode_actors) == ((1, 12), (8, 8), (2, 6))
    capped = settings("cluster.faces_min_actors=5", "cluster.faces_max_actors=3")
    assert plan_cluster({"CPU": 4}, capped).faces_actors == (3, 3)


def test_the_device_setting_decides_where_restoration_runs():
    assert not plan_cluster({"CPU": 8, "GPU": 1}, settings("model.device=cpu")).restore_on_gpu
    assert not plan_cluster({"CPU": 8}, settings("model.device=cuda")).restore_on_gpu  # refused by preflight
    waiting = plan_cluster({"CPU": 8}, settings("model.device=cuda", "cluster.wait_for_gpus=true"))
    assert waiting.restore_on_gpu and waiting.restore_actors == (1, 1)


def test_pool_sizes_do_not_change_result_keys():
    from pipeline.state import settings_key

    resized = settings("cluster.faces_max_actors=9")
    assert settings_key(resized, "w", "fp32") == settings_key(settings(), "w", "fp32")


@pytest.fixture
def local_ray():
    import ray

    yield
    ray.shutdown()  # later modules start Ray with their own CPU count


def test_only_restoration_actors_ask_for_gpus(local_ray, tmp_path):
    plan = plan_cluster({"CPU": 16, "GPU": 2}, settings())
    context = make_context(settings(), plan, work_root=tmp_path, check_detector=False)
    assert context.restore_device == "cuda"
    probe, faces, restore, encode = stage_operators(context)
    assert restore.ray_remote_args == {"num_cpus": 0, "num_gpus": 1}
    assert (restore.compute.min_size, restore.compute.max_size) == (1, 2)
    for op in (faces, encode):
        assert op.ray_remote_args.get("num_gpus", 0) == 0 and op.ray_remote_args["num_cpus"] == 1
    assert probe.ray_remote_args.get("num_gpus", 0) == 0 and probe.ray_remote_args["num_cpus"] == 1


def test_cpu_actors_ask_for_memory_only_when_set(local_ray, tmp_path):
    """cluster.actor_memory_gb: the faces and encode actors ask Ray for it; a video's probe task and a
    restoration actor on a GPU do not, and nothing asks for memory by default."""
    gib = 1024**3
    for value, expected in ((0, None), (2.5, 2.5 * gib)):
        chosen = settings(f"cluster.actor_memory_gb={value}")
        plan = plan_cluster({"CPU": 16, "GPU": 2, "memory": 64 * gib}, chosen)
        context = make_context(chosen, plan, work_root=tmp_path, check_detector=False)
        probe, faces, restore, encode = stage_operators(context)
        assert faces.ray_remote_args.get("memory") == expected == encode.ray_remote_args.get("memory")
        assert "memory" not in probe.ray_remote_args and "memory" not in restore.ray_remote_args


def test_pools_sized_from_the_cluster_fit_its_memory_when_actors_ask_for_it():
    """64 CPUs and 2 GPUs but 40 GiB for tasks and actors: at 4 GiB an actor, the faces and encode pools
    together hold 10 actors, in proportion to their cost, where by CPUs they would hold 60; the memory
    counts node by node (an actor never spans nodes), and a minimum that does not fit is refused."""
    from pipeline.cluster import SetupError

    gib = 1024**3
    by_cpus = plan_cluster({"CPU": 64, "GPU": 2, "memory": 40 * gib}, settings())
    assert by_cpus.faces_actors[1] + by_cpus.encode_actors[1] > 50 and by_cpus.actor_memory == 0
    plan = plan_cluster({"CPU": 64, "GPU": 2, "memory": 40 * gib}, settings("cluster.actor_memory_gb=4"))
    assert plan.faces_actors[1] + plan.encode_actors[1] == 10 and plan.actor_memory == 4 * gib
    assert plan.encode_actors[1] > plan.faces_actors[1] >= 1  # the encoder costs more per frame
    assert plan.restore_actors == by_cpus.restore_actors
    # a plan made without Ray and without an estimate of its memory is sized by the CPUs
    unknown = plan_cluster({"CPU": 64, "GPU": 2}, settings("cluster.actor_memory_gb=4"))
    assert unknown.faces_actors == by_cpus.faces_actors and unknown.actor_memory == 4 * gib
    # two nodes of 7 GiB hold one 4 GiB actor each, not three between them
    four = settings("cluster.actor_memory_gb=4")
    nodes = plan_cluster({"CPU": 16, "GPU": 1, "memory": 14 * gib}, four, [8, 8], [7 * gib] * 2)
    assert (nodes.faces_actors, nodes.encode_actors) == ((1, 1), (1, 1))
    # without a GPU, restoration's actor on the CPUs asks too: three actors do not fit
    refused = r"actor_memory_gb=4 GiB per CPU actor: the stages need 3 CPU actors at once \(12 GiB\).*holds 2"
    with pytest.raises(SetupError, match=refused + r".*lower cluster.actor_memory_gb"):
        plan_cluster({"CPU": 16, "memory": 14 * gib}, four, [8, 8], [7 * gib] * 2)


def test_a_cluster_too_small_for_a_cpu_per_actor_shares_its_cpus():
    """Two 1-CPU nodes cannot hold faces, restore and encode actors at one CPU each: they ask for half
    a CPU each and every pool stays at its minimum, instead of waiting forever for a third CPU."""
    plan = plan_cluster({"CPU": 2}, settings(), node_cpus=[1, 1])
    assert plan.cpus_per_actor == 0.5 and not plan.restore_on_gpu
    assert (plan.faces_actors, plan.restore_actors, plan.encode_actors) == ((1, 1), (1, 1), (1, 1))
    assert plan_cluster({"CPU": 1}, settings(), node_cpus=[1]).cpus_per_actor == 0.25
    assert plan_cluster({"CPU": 3}, settings(), node_cpus=[3]).cpus_per_actor == 1.0
    with_gpu = plan_cluster({"CPU": 2, "GPU": 1}, settings(), node_cpus=[2])
    assert with_gpu.restore_on_gpu and with_gpu.cpus_per_actor == 1.0  # restoration needs no CPU


def test_a_cluster_that_cannot_hold_the_pools_is_refused_naming_the_cpus_needed():
    from pipeline.cluster import SetupError

    with pytest.raises(SetupError, match=r"has 0.5 CPUs .* need 3 CPU actors .* give the cluster 3 CPUs"):
        plan_cluster({"CPU": 0.5}, settings(), node_cpus=[0.5])
    three_faces = settings("cluster.faces_min_actors=3", "cluster.faces_max_actors=3")
    with pytest.raises(SetupError, match=r"need 5 CPU actors .*faces 3, encode 1, restore 1"):
        plan_cluster({"CPU": 1}, three_faces, node_cpus=[0.5, 0.5])
    with pytest.raises(SetupError, match="restore_min_actors=3 asks for a GPU per actor, but .* has 2"):
        three = settings("cluster.restore_min_actors=3", "cluster.restore_max_actors=3")
        plan_cluster({"CPU": 16, "GPU": 2}, three)


def test_stage_actors_ask_for_the_share_of_a_cpu_the_plan_gives(local_ray, tmp_path):
    plan = plan_cluster({"CPU": 2}, settings(), node_cpus=[1, 1])
    context = make_context(settings(), plan, work_root=tmp_path, check_detector=False)
    dataset = build_dataset([VideoTask("a", "a.mp4")], context)
    operator, asked = dataset._logical_plan.dag, []
    while operator.input_dependencies:
        asked.append(operator.ray_remote_args["num_cpus"])
        operator = operator.input_dependencies[0]
    assert asked == [0.5, 0.5, 0.5, 0.5]  # encode, restore, faces, probe


def test_detection_goes_to_the_gpus_where_restoration_does_unless_set_to_cpu():
    from pipeline.cluster import SetupError

    assert plan_cluster({"CPU": 16, "GPU": 2}, settings()).detect_on_gpu  # faces.device=auto
    assert not plan_cluster({"CPU": 16, "GPU": 2}, settings("faces.device=cpu")).detect_on_gpu
    assert not plan_cluster({"CPU": 16, "GPU": 2}, settings("model.device=cpu")).detect_on_gpu
    assert not plan_cluster({"CPU": 16, "GPU": 2}, settings("faces.mode=aligned")).detect_on_gpu
    assert not plan_cluster({"CPU": 16}, settings()).detect_on_gpu
    with pytest.raises(SetupError, match="faces.device is 'cuda' but the Ray cluster has no GPU"):
        plan_cluster({"CPU": 16}, settings("faces.device=cuda"))
    with pytest.raises(SetupError, match="faces.device is 'cuda' but restoration runs on the CPU"):
        plan_cluster({"CPU": 16, "GPU": 1}, settings("faces.device=cuda", "model.device=cpu"))
    with pytest.raises(ValueError, match="faces.device='tpu': choose one of auto, cpu, cuda"):
        settings("faces.device=tpu")
