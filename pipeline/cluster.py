"""Where a run's stages run: connecting to Ray, and mapping the stages onto the cluster's resources.

The plan is made once on the driver from `ray.cluster_resources()` and travels in the run's context
(pipeline.context); nothing here touches a video.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.costs import frame_costs


class SetupError(ValueError):
    """The run cannot start: its weights or devices are not there, or the cluster cannot hold its
    stages. Nothing was processed."""


@dataclass(frozen=True)
class ClusterPlan:
    """How the stages map onto the cluster's resources.

    Attributes:
        faces_actors, restore_actors, encode_actors: (min, max) actors of each pool.
        restore_on_gpu: restoration actors ask for one GPU each (and no CPU).
        cpus_per_actor: the CPUs each CPU actor (and probe task) asks for: 1, or a fraction on a
            cluster too small to hold every pool's minimum at one CPU each.
        detect_on_gpu: detection runs in one detector actor per GPU (pipeline.faces.remote), which
            shares its GPU with a restoration actor; the faces actors track and align on their CPUs.
        actor_memory: bytes of memory each CPU actor asks Ray for (cluster.actor_memory_gb; 0: none).
    """

    gpus: int
    cpus: float
    faces_actors: tuple[int, int]
    restore_actors: tuple[int, int]
    encode_actors: tuple[int, int]
    restore_on_gpu: bool
    cpus_per_actor: float = 1.0
    detect_on_gpu: bool = False
    actor_memory: float = 0.0

    def actors(self, stage: str) -> tuple[int, int]:
        """(min, max) actors of the pool of the stage named `stage` (faces, restore, encode)."""
        return getattr(self, f"{stage}_actors")


LOCAL_PLAN = ClusterPlan(gpus=0, cpus=1, faces_actors=(1, 1), restore_actors=(1, 1), encode_actors=(1, 1),
                         restore_on_gpu=False)  # fmt: skip
"""One actor per stage on the CPU: stages called in one process, without Ray (tests, the Restorer)."""

# The CPUs a CPU actor asks for, largest first: on a cluster too small for one CPU per actor, every
# pool still gets its minimum by sharing CPUs, instead of waiting forever for CPUs that never come.
CPU_SHARES = (1.0, 0.5, 0.25)
GIB = 1024**3


def plan_cluster(
    resources: Mapping[str, float],
    settings: Settings | None = None,
    node_cpus: Sequence[float] | None = None,
    node_memory: Sequence[float] | None = None,
) -> ClusterPlan:
    """Restoration on one GPU per actor when the cluster has GPUs (or `cluster.wait_for_gpus` with
    model.device=cuda), else on CPU actors; the CPU pools share the CPUs. Pool sizes of 0 in the
    settings' cluster section are sized from `resources` (ray.cluster_resources()): the faces and encode
    pools get the CPUs the GPU actors leave in proportion to their cost per frame (pipeline.costs).

    Every pool's minimum must be able to run at once, on the nodes as they are (`node_cpus`: the CPUs
    of each node; default one node with all of them): when one CPU per actor does not fit, the CPU
    actors ask for a half or a quarter CPU each, and the pools stay at their minimum.

    With `cluster.actor_memory_gb`, every CPU actor asks Ray for that memory too, and the pools sized
    from the cluster hold no more CPU actors than Ray's memory resource does (`node_memory`: the bytes
    of each node; default `resources["memory"]`, where there is one).

    Raises:
        SetupError: the pools' minimum does not fit even at a quarter CPU per actor, or not in the
            cluster's memory at `cluster.actor_memory_gb` each, or asks for more GPU actors than the
            cluster has GPUs.
    """
    settings = settings or Settings()
    cluster, model = settings.cluster, settings.model
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 0))
    nodes = list(node_cpus) if node_cpus is not None else [cpus]
    on_gpu = model.device != "cpu" and (gpus > 0 or (model.device == "cuda" and cluster.wait_for_gpus))
    ask = cluster.actor_memory_gb * GIB
    memories = list(node_memory) if node_memory is not None else [resources.get("memory")]
    memories = [memory for memory in memories if memory is not None]
    # how many CPU actors Ray can place by memory (an actor never spans nodes); None: no memory asked, or
    # none known (a plan made without Ray, whose memory could not be estimated)
    memory_slots = sum(int(memory / ask + 1e-9) for memory in memories) if ask and memories else None

    def pools(small: bool) -> tuple[tuple[int, int], ...]:
        """(min, max) of faces, restore, encode; a max of 0 in the settings is sized from the cluster,
        or, on a cluster too `small` for one CPU per actor, kept at the pool's minimum."""

        def pool(low: int, high: int, automatic: int, on_cpus: bool = True) -> tuple[int, int]:
            high = high or (low if small and on_cpus else max(1, automatic))
            return min(low, high), high

        faces_share, encode_share = (int(spare * cost / costs.total) for cost in (costs.faces, costs.encode))
        room = None if memory_slots is None else memory_slots - (0 if on_gpu else 1)
        if room is not None and faces_share + encode_share > room:  # the memory holds fewer actors
            faces_share = max(1, int(room * costs.faces / (costs.faces + costs.encode)))
            encode_share = max(1, room - faces_share)
        return (
            pool(cluster.faces_min_actors, cluster.faces_max_actors, faces_share),
            pool(cluster.restore_min_actors, cluster.restore_max_actors, gpus if on_gpu else 1, not on_gpu),
            pool(cluster.encode_min_actors, cluster.encode_max_actors, encode_share),
        )

    detect_on_gpu = detection_on_gpu(settings.faces, gpus, on_gpu)
    # the CPU pools share the CPUs the GPU actors leave (a detector actor takes one) by their cost per
    # frame at 1080p (pipeline.costs); probe tasks take the rest
    spare = max(1, int(cpus) - gpus * (2 if detect_on_gpu else 1))
    costs = frame_costs(settings, detect_on_gpu=detect_on_gpu)
    faces, restore, encode = pools(small=False)
    if on_gpu and gpus and restore[0] > gpus:
        raise SetupError(
            f"cluster.restore_min_actors={restore[0]} asks for a GPU per actor, but the Ray cluster has "
            f"{gpus}; set it to {gpus} or fewer"
        )
    needed = faces[0] + encode[0] + (0 if on_gpu else restore[0])
    share = next((share for share in CPU_SHARES if cpu_slots(nodes, share) >= needed), None)
    if share is None:
        largest = max(nodes, default=0.0)
        raise SetupError(
            f"the Ray cluster has {cpus:g} CPUs ({len(nodes)} nodes, at most {largest:g} on one), but the "
            f"stages need {needed} CPU actors at once (faces {faces[0]}, encode {encode[0]}"
            + ("" if on_gpu else f", restore {restore[0]}")
            + f"): give the cluster {needed} CPUs ({needed * CPU_SHARES[-1]:g} at the very least, on one "
            "node), or lower cluster.*_min_actors"
        )
    if memory_slots is not None and needed > memory_slots:
        largest = max(memories, default=0.0)
        raise SetupError(
            f"cluster.actor_memory_gb={cluster.actor_memory_gb:g} GiB per CPU actor: the stages need "
            f"{needed} CPU actors at once ({needed * cluster.actor_memory_gb:g} GiB), but the Ray "
            f"cluster's memory for tasks and actors holds {memory_slots} ({sum(memories) / GIB:.1f} GiB on "
            f"{len(memories)} node{'s' * (len(memories) != 1)}, at most {largest / GIB:.1f} on one): "
            "lower cluster.actor_memory_gb or cluster.*_min_actors, or add memory"
        )
    if share < 1:
        faces, restore, encode = pools(small=True)
    return ClusterPlan(gpus=gpus, cpus=cpus, faces_actors=faces, restore_actors=restore, encode_actors=encode,
                       restore_on_gpu=on_gpu, cpus_per_actor=share, detect_on_gpu=detect_on_gpu,
                       actor_memory=ask)  # fmt: skip


def detection_on_gpu(faces, gpus: int, restore_on_gpu: bool) -> bool:
    """Whether detection runs on the GPUs: faces.device cuda (which needs GPUs in the cluster now), or
    auto with restoration on GPUs that are there. Aligned mode detects nothing."""
    if faces.mode == "aligned" or faces.device == "cpu":
        return False
    if faces.device == "cuda" and not (gpus and restore_on_gpu):
        raise SetupError(
            "faces.device is 'cuda' but "
            + ("the Ray cluster has no GPU" if not gpus else "restoration runs on the CPU (model.device=cpu)")
            + ": set faces.device to auto or cpu"
        )
    return bool(gpus) and restore_on_gpu


def cpu_slots(node_cpus: Sequence[float], share: float) -> int:
    """How many actors of `share` CPUs fit on nodes with these CPUs (an actor never spans nodes)."""
    return sum(int(cpus / share + 1e-9) for cpus in node_cpus)


def cluster_address(address: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The cluster a run connects to: `address`, else RAY_ADDRESS (which Ray sets for the driver of a
    submitted job: the job's own cluster), else None for an embedded local Ray.

    A dashboard URL (http://HEAD:8265, what `ray job submit` reads from RAY_ADDRESS) is for submitting
    jobs, not for a driver to connect to; it is refused with the way to use it."""
    address = address or environ.get("RAY_ADDRESS") or None
    if address and address.startswith(("http://", "https://")):
        raise SetupError(
            f"{address} is a Ray dashboard (Jobs API) address: submit the run there with "
            f"`dpt-batch submit --address {address} -- run ...`, or give `run` the cluster's GCS address "
            "(--address HEAD:6379, or auto on a node of the cluster); unset RAY_ADDRESS for a local run"
        )
    return address


def connect(settings: Settings, address: str | None) -> ClusterPlan:
    """Connect to Ray (or start it) and map the stages onto its resources."""
    import ray

    init_ray(address)
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    node_cpus = [node.get("CPU", 0.0) for node in nodes]
    node_memory = [node.get("memory", 0.0) for node in nodes]
    return plan_cluster(ray.cluster_resources(), settings, node_cpus, node_memory)


def init_ray(address: str | None) -> None:
    """Connect to the cluster at `address` (or, inside a Ray job, the job's cluster), or start an
    embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # The machine's real CPUs: on a small one the pools share them (plan_cluster).
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
