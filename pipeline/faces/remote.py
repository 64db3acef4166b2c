"""Detection on the GPUs, served to the CPU actors of the faces stage.

With detection on the GPUs (`ClusterPlan.detect_on_gpu`), each GPU holds one DetectorService actor:
RetinaFace on that GPU, detecting batches of frames that the faces actors decoded and shrank to
`faces.detect_max_side` on their CPUs. A shrunk frame is what crosses Ray's object store (0.7 MB at
640 x 360, against 6.2 MB for a 1080p frame), and only boxes and landmarks come back. Tracking,
smoothing and alignment stay in the faces actors, which keep the clip's full-size frames for the crops,
so a frame is still decoded once for the faces stage.

Sharing a GPU: a detector asks for DETECT_GPU_SHARE of its GPU and the restoration actor beside it for
the rest. Both go into the same bundle ({GPU: 1, CPU: 1}) of one placement group per run: left to
itself, Ray may pack several detectors' shares onto one GPU and leave no whole share for a
restoration actor there.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.faces.detect import Detection, FaceDetector, detection_scale, resize_for_detection
from pipeline.faces.settings import FaceSettings

DETECT_GPU_SHARE = 0.25
RESTORE_GPU_SHARE = 1.0 - DETECT_GPU_SHARE
# Frames per call to a detector: large enough to fill its batches, small enough that several faces
# actors' calls interleave.
FRAMES_PER_CALL = 32
# How long the run waits for the GPUs' bundles before it refuses to start.
PLACEMENT_TIMEOUT_S = 300


class DetectorService:
    """The body of a detector actor: a FaceDetector on `device` that takes frames already shrunk."""

    def __init__(self, settings: FaceSettings, device: str = "cuda") -> None:
        self.detector = FaceDetector.from_settings(replace(settings, detect_max_side=0), device=device)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """N x h x w x 3 uint8 BGR frames -> per frame a K x 15 float32 array: box (x0, y0, x1, y1),
        score, then the five landmarks' x, y; in the frames' pixels, by descending score."""
        rows = [[[*face.box, face.score, *face.landmarks.ravel()] for face in faces]
                for faces in self.detector.detect(frames, "BGR")]  # fmt: skip
        return [np.array(found, np.float32).reshape(-1, 15) for found in rows]


class RemoteDetector:
    """FaceDetector's `detect` for a faces actor: frames shrunk here, found by a DetectorService (one on
    this node when there is one), mapped back to source pixels."""

    def __init__(self, services: Sequence[tuple[Any, str]], max_side: int, node_id: str = "") -> None:
        """
        Arguments:
            services: (actor handle, node id) of each detector actor.
            max_side: faces.detect_max_side.
            node_id: this process's Ray node; the detectors on it are asked first.
        """
        local = [handle for handle, node in services if node == node_id]
        self.services = local or [handle for handle, _ in services]
        self.max_side = max_side

    def detect(
        self, frames: np.ndarray | Sequence[np.ndarray], image_format: str = "RGB"
    ) -> list[list[Detection]]:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format={image_format!r}: use 'RGB' or 'BGR'")
        if len(frames) == 0:
            return []
        scale = detection_scale(*frames[0].shape[:2], self.max_side)
        shrunk = np.stack([resize_for_detection(frame, scale) for frame in frames])
        if image_format == "RGB":
            shrunk = np.ascontiguousarray(shrunk[..., ::-1])
        return self.detect_shrunk(shrunk, scale)

    def detect_shrunk(self, frames: np.ndarray | Sequence[np.ndarray], scale: float) -> list[list[Detection]]:
        """The faces of BGR frames shrunk by `scale` already (as the faces stage decodes them), in
        source-frame pixels."""
        import ray

        if len(frames) == 0:
            return []
        shrunk = np.stack(frames)
        service = random.choice(self.services)
        calls = [service.detect.remote(shrunk[i : i + FRAMES_PER_CALL])
                 for i in range(0, len(shrunk), FRAMES_PER_CALL)]  # fmt: skip
        return [
            [Detection(row[:4] / scale, float(row[4]), row[5:].reshape(5, 2) / scale) for row in found]
            for chunk in ray.get(calls)
            for found in chunk
        ]


@dataclass
class Detectors:
    """A run's detector actors and the placement group that pairs each with a restoration actor."""

    placement_group: Any
    services: tuple[tuple[Any, str], ...]

    def scheduling_strategy(self):
        """Where restoration actors go: the bundles of the detectors' GPUs."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(self.placement_group)

    def stop(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for handle, _ in self.services:
            ray.kill(handle)
        remove_placement_group(self.placement_group)


def start_detectors(settings: FaceSettings, gpus: int, device: str = "cuda",
                    timeout_s: float = PLACEMENT_TIMEOUT_S) -> Detectors:  # fmt: skip
    """One detector actor per GPU, each in a bundle {GPU: 1, CPU: 1} of a new placement group, loaded
    and ready.

    Raises:
        TimeoutError: the cluster did not give the bundles within `timeout_s`.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"GPU": 1, "CPU": 1}] * gpus, strategy="PACK")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise TimeoutError(
            f"the cluster did not give {gpus} GPU(s) with a CPU each for detection within {timeout_s:g} s"
        )
    actor = ray.remote(DetectorService)
    handles = [
        actor.options(
            num_cpus=1, num_gpus=DETECT_GPU_SHARE, max_restarts=-1, max_task_retries=-1,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i),
        ).remote(settings, device)  # fmt: skip
        for i in range(gpus)
    ]
    nodes = ray.get([handle.node_id.remote() for handle in handles])
    return Detectors(group, tuple(zip(handles, nodes, strict=True)))
