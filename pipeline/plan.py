"""`dpt-batch run --dry-run`: what a run would do, without Ray: frames, clips, a face-frames estimate."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import pandas as pd

from pipeline.config import Settings
from pipeline.records import describe_error
from pipeline.restorer import Restorer

Row = dict[str, Any]


def plan_video(video: Row, restorer: Restorer, sample_every_s: float = 1.0) -> Row:
    """Probe and scene-split a video, and estimate its face-frames from detections on sampled frames
    (about one per `sample_every_s` seconds of every clip; in aligned mode every frame is a face)."""
    from pipeline.storage import local_copy

    plan = {"video_id": video["video_id"], "uri": video["uri"], "frames": 0, "fps": "", "duration_s": 0.0,
            "width": 0, "height": 0, "clips": 0, "faces_estimate": 0, "error": ""}  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="dpt-plan-") as folder:
            plan.update(_plan_source(str(local_copy(video["uri"], folder)), restorer, sample_every_s))
    except Exception as error:
        plan["error"] = describe_error(error)
    return plan


def _plan_source(path: str, restorer: Restorer, sample_every_s: float) -> Row:
    from pipeline.media import read_frames

    info, clips = restorer.scan(path)
    step = max(1, round(float(info.frame_rate) * sample_every_s))
    estimate = 0.0
    for clip in clips:
        if restorer.aligned_mode:
            estimate += clip.frame_count
            continue
        frames = [read_frames(path, i, i + 1)[0] for i in range(clip.start, clip.end, step)]
        faces = [len(found) for found in restorer.detector.detect(frames)]
        estimate += sum(faces) / len(faces) * clip.frame_count
    return {
        "frames": info.frame_count,
        "fps": f"{info.frame_rate.numerator}/{info.frame_rate.denominator}",
        "duration_s": info.duration_s,
        "width": info.width,
        "height": info.height,
        "clips": len(clips),
        "faces_estimate": round(estimate),
    }


def plan_archive(
    manifest: pd.DataFrame, settings: Settings, progress: Callable[[int], None] = lambda done: None
) -> list[Row]:
    """The plan of every video of a manifest (probe, clips, face-frames estimate), without Ray."""
    restorer = Restorer(settings)
    if not restorer.aligned_mode:
        restorer.detector  # noqa: B018 (a detector that cannot load stops the plan before any video)
    plans = []
    for video_id, uri in zip(manifest["video_id"], manifest["uri"], strict=True):
        plans.append(plan_video({"video_id": video_id, "uri": uri}, restorer))
        progress(1)
    return plans


def format_plan(plans: list[Row]) -> list[str]:
    lines = [f"{'video_id':<32} {'frames':>8} {'fps':>11} {'seconds':>8} {'clips':>6} {'face-frames~':>12}"]
    for plan in plans:
        if plan["error"]:
            lines.append(f"{plan['video_id']:<32} unreadable: {plan['error']}")
            continue
        lines.append(
            f"{plan['video_id']:<32} {plan['frames']:>8} {plan['fps']:>11} {plan['duration_s']:>8.1f} "
            f"{plan['clips']:>6} {plan['faces_estimate']:>12}"
        )
    ok = [plan for plan in plans if not plan["error"]]
    lines.append(
        f"{len(plans)} videos ({len(plans) - len(ok)} unreadable), {sum(p['clips'] for p in ok)} clips, "
        f"{sum(p['frames'] for p in ok)} frames, about {sum(p['faces_estimate'] for p in ok)} face-frames"
    )
    return lines


def format_speed(plans: list[Row], settings: Settings, cluster_plan) -> list[str]:
    """What the cluster of `cluster_plan` would make of these videos: each stage's frames a second and
    the one that limits the run (pipeline.costs), for the archive's frame-weighted mix of sizes."""
    from pipeline.costs import FrameCosts, format_throughput, frame_costs

    ok = [plan for plan in plans if not plan["error"] and plan["frames"]]
    frames = sum(plan["frames"] for plan in ok)
    if not frames:
        return []
    on_gpu = cluster_plan.detect_on_gpu
    parts = [(frame_costs(settings, plan["width"], plan["height"], on_gpu), plan["frames"]) for plan in ok]
    mixed = FrameCosts(*(sum(getattr(cost, name) * count for cost, count in parts) / frames
                         for name in ("probe", "faces", "encode")))  # fmt: skip
    sizes = sorted({f"{plan['width']}x{plan['height']}" for plan in ok})
    size = f"{sizes[0]} frames" if len(sizes) == 1 else f"frames of {len(sizes)} sizes"
    face_share = sum(plan["faces_estimate"] for plan in ok) / frames
    return format_throughput(cluster_plan, mixed, face_share, size, tiny=settings.model.name == "tiny")


def dry_run_cluster(settings: Settings, address: str | None):
    """The cluster plan a run would make: from the Ray cluster at `address` (or RAY_ADDRESS) when one
    is given, otherwise from this machine's CPUs and GPUs (what the embedded Ray would declare), without
    starting Ray."""
    import os

    from pipeline.cluster import cluster_address, connect, plan_cluster

    if cluster_address(address):
        return connect(settings, address)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cpus = float(os.cpu_count() or 1)
    resources = {"CPU": cpus, "GPU": gpus}
    if memory := local_ray_memory():
        resources["memory"] = memory
    return plan_cluster(resources, settings, [cpus])


def local_ray_memory() -> float | None:
    """The memory resource an embedded Ray would declare on this machine (what is available less its
    object store), or None where Ray's own estimate cannot be had."""
    try:
        from ray._private.utils import estimate_available_memory, resolve_object_store_memory

        available = estimate_available_memory()
        return float(available - resolve_object_store_memory(available))
    except (ImportError, AttributeError, TypeError, ValueError):  # Ray's private helpers moved
        return None
