"""Where a run's stages run: connecting to Ray, and mapping the stages onto the cluster's resources.

The plan is made once on the driver from `ray.cluster_resources()` and travels in the run's context
(pipeline.context); nothing here touches a video.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.config import Settings


class SetupError(ValueError):
    """The run cannot start: its weights or devices are not there. Nothing was processed."""


@dataclass(frozen=True)
class ClusterPlan:
    """How the stages map onto the cluster's resources: (min, max) actors per pool."""

    gpus: int
    cpus: int
    faces_actors: tuple[int, int]
    restore_actors: tuple[int, int]
    encode_actors: tuple[int, int]
    restore_on_gpu: bool

    def actors(self, stage: str) -> tuple[int, int]:
        """(min, max) actors of the pool of the stage named `stage` (faces, restore, encode)."""
        return getattr(self, f"{stage}_actors")


LOCAL_PLAN = ClusterPlan(gpus=0, cpus=1, faces_actors=(1, 1), restore_actors=(1, 1), encode_actors=(1, 1),
                         restore_on_gpu=False)  # fmt: skip
"""One actor per stage on the CPU: stages called in one process, without Ray (tests, the Restorer)."""


def plan_cluster(resources: dict[str, float], settings: Settings | None = None) -> ClusterPlan:
    """Restoration on one GPU per actor when the cluster has GPUs (or `cluster.wait_for_gpus` with
    model.device=cuda), else on CPU actors; the CPU pools share the CPUs. Pool sizes of 0 in the
    settings' cluster section are sized from `resources` (ray.cluster_resources())."""
    from pipeline.config import ClusterSettings, ModelSettings

    cluster = settings.cluster if settings else ClusterSettings()
    model = settings.model if settings else ModelSettings()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    on_gpu = model.device != "cpu" and (gpus > 0 or (model.device == "cuda" and cluster.wait_for_gpus))
    spare = max(1, cpus - gpus)

    def pool(low: int, high: int, automatic: int) -> tuple[int, int]:
        high = high or max(1, automatic)
        return min(low, high), high

    return ClusterPlan(
        gpus=gpus,
        cpus=cpus,
        faces_actors=pool(cluster.faces_min_actors, cluster.faces_max_actors, spare // 2),
        restore_actors=pool(cluster.restore_min_actors, cluster.restore_max_actors, gpus if on_gpu else 1),
        encode_actors=pool(cluster.encode_min_actors, cluster.encode_max_actors, spare // 4),
        restore_on_gpu=on_gpu,
    )


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
    return plan_cluster(ray.cluster_resources(), settings)


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
        # Stages ask for one CPU per actor; a small machine still needs room for every pool at once.
        ray.init(num_cpus=max(os.cpu_count() or 1, 4), include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
