"""A run's context: every run-wide value, decided once on the driver before any work.

    settings -> weights resolved (identity, and where each node gets them)
             -> weights files of the face side hashed (once each)
             -> device and precision of each actor pool (from the cluster plan)
             -> the settings key, from those effective values
             -> work root, output, run id

Stages receive the context and never resolve, hash or decide any of these again.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.devices import effective_precision
from model.weights import ResolvedWeights, WeightsError, cache_dir_from_env, file_sha256, resolve_weights
from pipeline.cluster import LOCAL_PLAN, ClusterPlan, SetupError
from pipeline.config import Settings
from pipeline.state import FILE_SETTINGS, settings_key
from pipeline.storage import is_url


@dataclass(frozen=True)
class RunContext:
    """What every stage of a run shares, decided once (see `make_context`).

    Attributes:
        settings: the validated settings.
        weights: the network's weights as the driver resolved them; each node loads them with
            `model.weights.on_this_node`, which never hashes a file again.
        file_digests: sha256 of each weights file of the face side that the settings name
            ("faces.detector_weights", "faces.parsing_weights").
        restore_device, restore_precision: where and how DP-TempCoh runs ("cpu"/"cuda";
            "fp32"/"bf16"/"fp16": never "auto").
        faces_device: where face parsing runs, and detection unless `detectors` serve it.
        detectors: the detector actors on the GPUs (pipeline.faces.remote.Detectors) when the plan
            puts detection there; None: the faces actors detect on their CPUs.
        settings_key: hash of every pixel-changing value as it takes effect (pipeline.state).
        work_root: the folder of intermediate files (one sub-folder per video).
        output: the output folder or URL ("" outside a run: nothing is recorded).
        plan: the actor pools on the cluster.
        run_id: names this run's attempt counters.
        retry_failed: whether videos an earlier run failed are done again (otherwise kept).
    """

    settings: Settings
    weights: ResolvedWeights
    file_digests: Mapping[str, str]
    restore_device: str
    restore_precision: str
    faces_device: str
    settings_key: str
    work_root: str
    output: str = ""
    plan: ClusterPlan = LOCAL_PLAN
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    retry_failed: bool = False
    detectors: Any = None

    def work_dir(self, video_id: str) -> Path:
        return Path(self.work_root) / video_id

    def weights_used(self) -> dict[str, str]:
        """Where each set of weights came from, with its sha256: for run.json."""
        network = self.weights
        used = {"model.weights": network.identity if network.source == "synthetic"
                else f"{network.origin} ({network.source}): sha256 {network.identity}"}  # fmt: skip
        for name, digest in self.file_digests.items():
            used[name] = f"{_setting(self.settings, name)}: sha256 {digest}"
        if not self.settings.faces.detector_weights:
            used["faces.detector_weights"] = f"facexlib's release weights for {self.settings.faces.detector}"
        return used


def make_context(
    settings: Settings,
    plan: ClusterPlan = LOCAL_PLAN,
    output: str = "",
    work_root: str | Path | None = None,
    run_id: str | None = None,
    check_detector: bool = True,
) -> RunContext:
    """Decide a run's context on the driver, checking what every actor will need first, so that a
    missing file or device stops the run with one clear message before any work.

    Raises:
        SetupError: model.device=cuda on a cluster without GPUs, a precision the device lacks,
            weights that cannot be found or fetched, or a detector that cannot be built.
    """
    from pipeline.faces.detect import DetectorWeightsError

    if settings.model.device == "cuda" and not plan.restore_on_gpu:
        raise SetupError(
            "model.device is 'cuda' but the Ray cluster has no GPU; use 'auto' or 'cpu', or set "
            "cluster.wait_for_gpus=true if the cluster adds GPU nodes on demand"
        )
    restore_device = "cuda" if plan.restore_on_gpu else "cpu"
    try:
        precision = effective_precision(settings.model.precision, restore_device)
        weights = resolve_weights(settings.model.weights)
        digests = weights_digests(settings)
        if check_detector:
            from pipeline.faces import FaceDetector

            FaceDetector.from_settings(settings.faces)
    except (WeightsError, DetectorWeightsError, ValueError, OSError) as error:
        raise SetupError(str(error)) from None
    if not work_root:
        work_root = default_work_root(output) if output else cache_dir_from_env() / "work" / "local"
    extra = {"run_id": run_id} if run_id else {}
    return RunContext(
        settings=settings,
        weights=weights,
        file_digests=digests,
        restore_device=restore_device,
        restore_precision=precision,
        faces_device="cpu",
        settings_key=settings_key(settings, weights.identity, precision, digests,
                                  detect_on="cuda" if plan.detect_on_gpu else "cpu"),
        work_root=str(work_root),
        output=str(output),
        plan=plan,
        **extra,
    )


def weights_digests(settings: Settings) -> dict[str, str]:
    """sha256 of each weights file of the face side the settings name, each read once: a URL's is
    its verified copy in this node's cache (whose digest was recorded when it was copied)."""
    from pipeline.faces.detect import local_weights

    digests = {}
    for name in FILE_SETTINGS:
        spec = _setting(settings, name)
        if spec:
            local = local_weights(spec, name)
            digests[name] = file_sha256(local, record=is_url(spec))
    return digests


def default_work_root(output: str | Path) -> Path:
    """OUT/work for a local output; for a URL, a local folder under the cache named after the URL."""
    if not is_url(output):
        return Path(output) / "work"
    digest = hashlib.sha256(str(output).encode()).hexdigest()[:16]
    return cache_dir_from_env() / "work" / digest


def _setting(settings: Settings, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(settings, section), name)
