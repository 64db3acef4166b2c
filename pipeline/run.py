"""`dpt-batch run`: the Ray Data graph from a manifest to restored films and catalogs.

    manifest -> probe + scene clips -> faces (CPU actors) -> DP-TempCoh (GPU actors, or CPU actors when
    the cluster has no GPU) -> paste-back + encode (CPU actors) -> assemble per video -> catalog

Rows between stages are small records (see `pipeline.stages`); the driver joins each video's encoded
clips with the source's audio and subtitles as soon as its last clip arrives, so memory does not grow
with film length or archive size.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Settings
from pipeline.lock import RemoteRunLock, RunLock
from pipeline.stages import DetectFaces, PasteAndEncode, RestoreFaces, Row, Stage, describe_error, split_video
from pipeline.storage import join

# Every clip row carries every field, so that Arrow blocks from different batches share one schema.
ROW_DEFAULTS: dict[str, Any] = {
    "video_id": "", "uri": "", "source": "", "work_dir": "", "clip_index": -1, "clip_count": 0,
    "start": 0, "end": 0, "scene": 0, "frames_in": 0, "fps_num": 0, "fps_den": 1, "width": 0, "height": 0,
    "duration_s": 0.0, "bit_depth": 8, "has_audio": False, "tracks": 0, "faces": 0, "tracks_json": "[]",
    "faces_artifact": "", "restored_artifact": "", "segment": "", "frames_out": 0, "weights": "", "error": "",
    "traceback": "", "seconds_probe": 0.0, "seconds_faces": 0.0, "seconds_restore": 0.0,
    "seconds_encode": 0.0, "clip_key": "", "resumed": False, "run_id": "",
}  # fmt: skip



def complete_row(row: Row) -> Row:
    return {**ROW_DEFAULTS, **{k: v for k, v in row.items() if k in ROW_DEFAULTS}}


class StageActor:
    """Adapts a `Stage` to Ray Data's `map_batches`: built (and set up) once per actor."""

    def __init__(self, stage_class: type[Stage], *args: Any) -> None:
        self.stage = stage_class(*args)
        self.stage.setup()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = [complete_row(row) for row in batch.to_dict("records")]
        return pd.DataFrame([complete_row(row) for row in self.stage.process(rows)])


@dataclass
class ClusterPlan:
    """How the stages map onto the cluster's resources: (min, max) actors per pool."""

    gpus: int
    cpus: int
    faces_actors: tuple[int, int]
    restore_actors: tuple[int, int]
    encode_actors: tuple[int, int]
    restore_on_gpu: bool


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


def build_dataset(videos: list[Row], settings: Settings, work_root: str, plan: ClusterPlan, output: str = ""):
    """The run as a Ray Data dataset of finished clip rows (lazy until iterated).

    With `output`, clips finished by an earlier run pass through as recorded, and each newly finished
    clip is recorded there (`pipeline.state`)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    # Rows are small records; a block per row lets each clip stream through the stages on its own and
    # spread over a pool's actors (otherwise a video's clips travel as one block, stage by stage).
    context.target_max_block_size = 1
    # One clip of the official network on a CPU can take longer than Ray's default 30 minutes without
    # output; dead workers are still detected by Ray itself.
    context.execution_no_progress_timeout_s = -1
    # Ray restarts dead actors and retries their tasks without limit; the stages themselves fail a clip
    # that killed its worker MAX_ATTEMPTS times (pipeline.stages.count_attempt). A block that errors
    # anyway is dropped rather than fatal, and the driver fails its video with the clips it lost.
    context.max_errored_blocks = -1
    gpus_per_actor = 1.0 if plan.restore_on_gpu else 0.0
    dataset = ray.data.from_items(videos)
    dataset = dataset.flat_map(
        split_video, fn_kwargs={"settings": settings, "work_root": work_root, "output": output}
    )
    dataset = dataset.map(complete_row)
    dataset = dataset.map_batches(
        StageActor, fn_constructor_args=(DetectFaces, settings), batch_size=1, batch_format="pandas",
        compute=ActorPoolStrategy(min_size=plan.faces_actors[0], max_size=plan.faces_actors[1]),
        num_cpus=DetectFaces.resources.cpus,
    )  # fmt: skip
    dataset = dataset.map_batches(
        StageActor, fn_constructor_args=(RestoreFaces, settings, gpus_per_actor),
        batch_size=max(1, settings.model.batch_windows), batch_format="pandas",
        compute=ActorPoolStrategy(min_size=plan.restore_actors[0], max_size=plan.restore_actors[1]),
        num_cpus=0 if plan.restore_on_gpu else 1, num_gpus=gpus_per_actor,
    )  # fmt: skip
    return dataset.map_batches(
        StageActor, fn_constructor_args=(PasteAndEncode, settings, output), batch_size=1,
        batch_format="pandas",
        compute=ActorPoolStrategy(min_size=plan.encode_actors[0], max_size=plan.encode_actors[1]),
        num_cpus=PasteAndEncode.resources.cpus,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# assembling a video from its clips


@dataclass
class VideoResult:
    """One input video's outcome: its catalog row, clip rows and track rows."""

    video: Row
    clips: list[Row] = field(default_factory=list)
    tracks: list[Row] = field(default_factory=list)


def assemble_video(source: Row, clips: list[Row], videos_dir: str | Path, error: str = "") -> VideoResult:
    """Join a video's encoded clips with the source's audio/subtitles, check the frame count, and
    publish the film as `videos_dir`/VIDEO_ID.mp4 (a local folder or URL; it appears whole or not at
    all). `error` fails the video whatever its clips say (e.g. clips lost to dying workers)."""
    from pipeline.faults import fault_point
    from pipeline.media import concat_clips, probe
    from pipeline.storage import join, publish_file

    clips = sorted(clips, key=lambda row: row["clip_index"])
    first = clips[0]
    fps = Fraction(int(first["fps_num"]), int(first["fps_den"])) if first["fps_num"] else Fraction(0)
    errors = [error] if error else []
    errors += [row["error"] for row in clips if row["error"]]
    video = {
        "video_id": source["video_id"],
        "uri": source["uri"],
        "status": "failed" if errors else "done",
        "output_uri": "",
        "frames_in": int(first["frames_in"]),
        "frames_out": 0,
        "fps": float(fps),
        "fps_rational": f"{fps.numerator}/{fps.denominator}",
        "duration_s": float(first["duration_s"]),
        "width": int(first["width"]),
        "height": int(first["height"]),
        "clips": len([row for row in clips if row["clip_index"] >= 0]),
        "tracks": sum(int(row["tracks"]) for row in clips),
        "faces_restored": sum(int(row["faces"]) for row in clips if not row["error"]),
        "seconds_probe": sum(float(row["seconds_probe"]) for row in clips),
        "seconds_faces": sum(float(row["seconds_faces"]) for row in clips),
        "seconds_restore": sum(float(row["seconds_restore"]) for row in clips),
        "seconds_encode": sum(float(row["seconds_encode"]) for row in clips),
        "error": errors[0] if errors else "",
        "weights": next((row["weights"] for row in clips if row["weights"]), ""),
    }
    start = time.perf_counter()
    if not errors:
        joined = Path(first["work_dir"]) / f"joined_{source['video_id']}.mp4"
        try:
            concat_clips([row["segment"] for row in clips], joined, streams_from=first["source"])
            frames_out = probe(joined).frame_count
            if frames_out != video["frames_in"]:
                raise RuntimeError(f"the output has {frames_out} frames, the source {video['frames_in']}")
            fault_point("assemble", source["video_id"])
            output = publish_file(joined, join(videos_dir, f"{source['video_id']}.mp4"))
            video.update(output_uri=output, frames_out=frames_out)
        except Exception as failure:
            video.update(status="failed", error=f"assemble: {describe_error(failure)}")
            joined.unlink(missing_ok=True)
    video["seconds_encode"] += time.perf_counter() - start
    clip_rows = [clip_catalog_row(row) for row in clips if row["clip_index"] >= 0]
    track_rows = [
        {"video_id": row["video_id"], "clip_index": int(row["clip_index"]), **track}
        for row in clips
        for track in json.loads(row["tracks_json"] or "[]")
    ]
    return VideoResult(video, clip_rows, track_rows)


def clip_catalog_row(row: Row) -> Row:
    return {
        "video_id": row["video_id"],
        "clip_index": int(row["clip_index"]),
        "start": int(row["start"]),
        "end": int(row["end"]),
        "frames": int(row["end"]) - int(row["start"]),
        "scene": int(row["scene"]),
        "tracks": int(row["tracks"]),
        "faces_restored": int(row["faces"]) if not row["error"] else 0,
        "status": "failed" if row["error"] else "done",
        "error": row["error"],
        "artifact": row["segment"],
    }


# ---------------------------------------------------------------------------------------------------
# the run


@dataclass
class RunSummary:
    """What a run did, for the summary table and the exit code."""

    videos: list[Row]
    clips: list[Row]
    tracks: list[Row]
    seconds: float
    output: str
    restore_on_gpu: bool
    reused: int = 0  # videos whose records from an earlier run were kept

    @property
    def failed(self) -> int:
        return sum(1 for video in self.videos if video["status"] == "failed")


def progress_line(clips_done: int, videos_done: int, videos: int, pending: dict[str, dict[int, Row]]) -> str:
    """One line of progress while clips come in: counts, and each unfinished video's clips so far."""
    in_flight = ", ".join(
        f"{name} {len(rows)}/{next(iter(rows.values()))['clip_count']}" for name, rows in pending.items()
    )
    return f"... {clips_done} clips done, {videos_done}/{videos} videos; in flight (clips): {in_flight}"


class SetupError(ValueError):
    """The run cannot start: its weights or devices are not there. Nothing was processed."""


def preflight(settings: Settings, plan: ClusterPlan) -> None:
    """Check on the driver what every actor will need, so that a missing file or device stops the run
    with one clear message before any work, instead of failing actor after actor."""
    from model.weights import WeightsError, resolve_weights
    from pipeline.faces import DetectorWeightsError, FaceDetector

    if settings.model.device == "cuda" and not plan.restore_on_gpu:
        raise SetupError(
            "model.device is 'cuda' but the Ray cluster has no GPU; use 'auto' or 'cpu', or set "
            "cluster.wait_for_gpus=true if the cluster adds GPU nodes on demand"
        )
    try:
        resolve_weights(settings.model.weights)
        FaceDetector.from_settings(settings.faces)
    except (WeightsError, DetectorWeightsError) as error:
        raise SetupError(str(error)) from None


def prepare(settings: Settings, address: str | None) -> ClusterPlan:
    """Connect to Ray, map the stages onto its resources, and check what the actors will need."""
    import ray

    init_ray(address)
    plan = plan_cluster(ray.cluster_resources(), settings)
    preflight(settings, plan)
    return plan


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


def default_work_root(output: str | Path) -> Path:
    """OUT/work for a local output; for a URL, a local folder under the cache named after the URL."""
    from model.weights import cache_dir_from_env
    from pipeline.storage import is_url

    if not is_url(output):
        return Path(output) / "work"
    digest = hashlib.sha256(str(output).encode()).hexdigest()[:16]
    return cache_dir_from_env() / "work" / digest


def reusable(record: Row, key: str, retry_failed: bool) -> bool:
    """Whether an earlier run's record of a video stands: same key, and done with its film still in
    place, or failed (unless failures are to be retried)."""
    from pipeline.storage import exists

    if record["key"] != key:
        return False
    video = record["video"]
    if video["status"] == "done":
        return bool(video["output_uri"]) and exists(video["output_uri"])
    return not retry_failed


class CatalogWriter:
    """Rewrites OUT/catalog from every finished video's rows, at most every `every_s` seconds (and
    when forced), in the manifest's order."""

    def __init__(self, output: str, order: list[str], manifest: pd.DataFrame | None, every_s: float) -> None:
        self.output, self.manifest, self.every_s = output, manifest, every_s
        self.order = {video_id: index for index, video_id in enumerate(order)}
        self.last = -math.inf

    def write(self, results: dict[str, VideoResult], force: bool = False) -> None:
        from pipeline.catalog import write_catalog

        if not force and time.perf_counter() - self.last < self.every_s:
            return
        ordered = sorted(results.values(), key=lambda result: self.order[result.video["video_id"]])
        write_catalog(
            self.output,
            [result.video for result in ordered],
            [row for result in ordered for row in result.clips],
            [row for result in ordered for row in result.tracks],
            self.manifest,
        )
        self.last = time.perf_counter()


def run_archive(
    videos: list[Row],
    output: str | Path,
    settings: Settings,
    address: str | None = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    progress_every_s: float = 30.0,
    plan: ClusterPlan | None = None,
    retry_failed: bool = False,
    work_root: str | Path | None = None,
    manifest: pd.DataFrame | None = None,
    catalog_every_s: float = 60.0,
) -> RunSummary:
    """Restore every video of `videos` (rows with video_id and uri) into `output` (a folder or URL).

    What an earlier run on `output` finished under the same settings and sources is kept (failed videos
    too, unless `retry_failed`); the rest is done, and every clip and video is recorded under
    OUT/state the moment it is finished. OUT/catalog is rewritten from all videos' rows at most every
    `catalog_every_s` seconds and at the end. `report` gets a line per finished video, and a progress
    line at most every `progress_every_s` seconds while clips of unfinished videos come in."""
    from dataclasses import asdict

    from model.weights import resolve_weights
    from pipeline.state import RunState, settings_key, source_fingerprint, video_key

    started = time.perf_counter()
    output = str(output)
    work_root = Path(work_root or default_work_root(output))
    plan = plan or prepare(settings, address)
    if not plan.restore_on_gpu:
        report("no GPU in the Ray cluster: DP-TempCoh runs on CPU actors")
    state = RunState(output)
    key = settings_key(settings, resolve_weights(settings.model.weights).identity)
    earlier = state.finished_videos()
    run_id = uuid.uuid4().hex[:12]  # names this run's attempt counters (pipeline.stages.count_attempt)
    results: dict[str, VideoResult] = {}
    todo = []
    for video in videos:
        fingerprint = source_fingerprint(video["uri"])
        keys = {"settings_key": key, "fingerprint": fingerprint, "run_id": run_id,
                "video_key": video_key(key, asdict(settings.scenes), fingerprint)}  # fmt: skip
        record = earlier.get(video["video_id"])
        if record and reusable(record, keys["video_key"], retry_failed):
            results[video["video_id"]] = VideoResult(record["video"], record["clips"], record["tracks"])
        else:
            todo.append({**video, **keys})
    state.record_run(run_id, videos, key)
    reused = len(results)
    if reused:
        failed = sum(1 for result in results.values() if result.video["status"] == "failed")
        report(
            f"{reused} videos were finished by an earlier run and are kept"
            + (f" ({failed} failed; --retry-failed retries them)" if failed else "")
        )
    catalog = CatalogWriter(output, [video["video_id"] for video in videos], manifest, catalog_every_s)
    sources = {video["video_id"]: video for video in todo}
    pending: dict[str, dict[int, Row]] = {}
    clips_done, last_progress = 0, time.perf_counter()

    def finish(video_id: str, clips: list[Row], error: str = "") -> None:
        source = sources[video_id]
        result = assemble_video(source, clips, join(output, "videos"), error=error)
        video = result.video
        video["seconds_total"] = time.perf_counter() - started
        state.record_video(source["video_key"], video, result.clips, result.tracks)
        results[video_id] = result
        if video["status"] == "done":
            state.forget_clips(video_id)
            shutil.rmtree(work_root / video_id, ignore_errors=True)
        report(
            f"[{len(results)}/{len(videos)}] {video_id}: {video['status']}, {video['frames_out']} frames, "
            f"{video['tracks']} tracks, {video['faces_restored']} face-frames restored"
            + (f" ({video['error']})" if video["error"] else "")
        )
        catalog.write(results)

    if todo:
        for row in build_dataset(todo, settings, str(work_root), plan, output).iter_rows():
            row = complete_row(dict(row))
            clips = pending.setdefault(row["video_id"], {})
            clips[int(row["clip_index"])] = row  # keyed: a clip delivered twice counts once
            clips_done += row["clip_index"] >= 0
            if row["clip_index"] >= 0 and len(clips) < int(row["clip_count"]):
                if time.perf_counter() - last_progress >= progress_every_s:
                    last_progress = time.perf_counter()
                    report(progress_line(clips_done, len(results), len(videos), pending))
                continue
            finish(row["video_id"], list(pending.pop(row["video_id"]).values()))
    for video_id, clips in pending.items():  # clips whose workers kept dying never came back
        count = int(next(iter(clips.values()))["clip_count"])
        lost = sorted(set(range(count)) - set(clips))
        shown = ", ".join(map(str, lost[:10])) + (" ..." if len(lost) > 10 else "")
        error = f"run: {len(lost)} of {count} clips were lost (clips {shown}); --retry-failed tries again"
        finish(video_id, list(clips.values()), error=error)
    catalog.write(results, force=True)
    ordered = [results[video["video_id"]] for video in videos if video["video_id"] in results]
    return RunSummary(
        videos=[result.video for result in ordered],
        clips=[row for result in ordered for row in result.clips],
        tracks=[row for result in ordered for row in result.tracks],
        seconds=time.perf_counter() - started,
        output=output,
        restore_on_gpu=plan.restore_on_gpu,
        reused=reused,
    )


# ---------------------------------------------------------------------------------------------------
# the plan of a run (--dry-run)


def plan_video(video: Row, settings: Settings, detector, sample_every_s: float = 1.0) -> Row:
    """Probe and scene-split a video, and estimate its face-frames from detections on sampled frames
    (about one per `sample_every_s` seconds of every clip)."""
    from pipeline.storage import local_copy

    plan = {"video_id": video["video_id"], "uri": video["uri"], "frames": 0, "fps": "", "duration_s": 0.0,
            "clips": 0, "faces_estimate": 0, "error": ""}  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="dpt-plan-") as folder:
            estimate = _plan_source(str(local_copy(video["uri"], folder)), settings, detector, sample_every_s)
        plan.update(estimate)
    except Exception as error:
        plan["error"] = describe_error(error)
    return plan


def _plan_source(path: str, settings: Settings, detector, sample_every_s: float) -> Row:
    from pipeline.media import probe, read_frames
    from pipeline.scenes import split_scenes

    info = probe(path)
    clips = split_scenes(path, settings.scenes, info=info)
    step = max(1, round(float(info.frame_rate) * sample_every_s))
    estimate = 0.0
    for clip in clips:
        frames = [read_frames(path, i, i + 1)[0] for i in range(clip.start, clip.end, step)]
        faces = [len(found) for found in detector.detect(frames)]
        estimate += sum(faces) / len(faces) * clip.frame_count
    return {
        "frames": info.frame_count,
        "fps": f"{info.frame_rate.numerator}/{info.frame_rate.denominator}",
        "duration_s": info.duration_s,
        "clips": len(clips),
        "faces_estimate": round(estimate),
    }


def plan_archive(
    manifest: pd.DataFrame, settings: Settings, progress: Callable[[int], None] = lambda done: None
) -> list[Row]:
    """The plan of every video of a manifest (probe, clips, face-frames estimate), without Ray."""
    from pipeline.faces import FaceDetector

    detector = FaceDetector.from_settings(settings.faces)
    plans = []
    for video_id, uri in zip(manifest["video_id"], manifest["uri"], strict=True):
        plans.append(plan_video({"video_id": video_id, "uri": uri}, settings, detector))
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


def run_manifest(
    manifest: pd.DataFrame,
    output: str | Path,
    settings: Settings,
    address: str | None = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    retry_failed: bool = False,
    work_root: str | Path | None = None,
) -> RunSummary:
    """`run_archive` over a validated manifest under the output's run lock, then run.json."""
    from pipeline.catalog import run_record, write_run_record
    from pipeline.storage import is_url

    started = time.time()
    videos = [{"video_id": v, "uri": u} for v, u in zip(manifest["video_id"], manifest["uri"], strict=True)]
    plan = prepare(settings, address)
    work_root = Path(work_root or default_work_root(output))
    # A URL output cannot hold an exclusive lock file: its local work folder holds the exclusive lock,
    # and a best-effort lock on the URL refuses runs from other hosts.
    with RunLock(work_root if is_url(output) else output) as lock, (
        RemoteRunLock(str(output)) if is_url(output) else contextlib.nullcontext()
    ) as remote:
        for held in (lock, remote):
            if held is not None and held.stale_owner:
                report(f"the lock of a run that is gone was taken over: {held.stale_owner}")
        summary = run_archive(videos, output, settings, address=address, report=report, plan=plan,
                              retry_failed=retry_failed, work_root=work_root, manifest=manifest)  # fmt: skip
        weights = next((v["weights"] for v in summary.videos if v["weights"]), settings.model.weights or "")
        record = run_record(settings, weights, started, time.time(), weights_used=weights_used(settings))
        write_run_record(str(output), record)
    return summary


def weights_used(settings: Settings) -> dict[str, str]:
    """Where each set of weights of a run came from, with its sha256: for run.json."""
    from model.weights import resolve_weights
    from pipeline.state import file_digest

    network = resolve_weights(settings.model.weights)
    used = {"model.weights": network.identity if network.source == "synthetic"
            else f"{network.origin} ({network.source}): sha256 {network.identity}"}  # fmt: skip
    for name, spec in (("faces.detector_weights", settings.faces.detector_weights),
                       ("faces.parsing_weights", settings.faces.parsing_weights)):  # fmt: skip
        if spec:
            used[name] = f"{spec}: sha256 {file_digest(spec)}"
    if not settings.faces.detector_weights:
        used["faces.detector_weights"] = f"facexlib's release weights for {settings.faces.detector}"
    return used


def format_summary(summary: RunSummary) -> list[str]:
    lines = [f"{'video_id':<32} {'status':<7} {'frames':>8} {'tracks':>7} {'faces':>8} {'seconds':>8}  error"]
    for v in summary.videos:
        lines.append(
            f"{v['video_id']:<32} {v['status']:<7} {v['frames_out']:>8} {v['tracks']:>7} "
            f"{v['faces_restored']:>8} {v['seconds_total']:>8.1f}  {v['error']}"
        )
    count = {s: sum(1 for v in summary.videos if v["status"] == s) for s in ("done", "failed", "skipped")}
    kept = f" ({summary.reused} kept from an earlier run)" if summary.reused else ""
    lines.append(
        f"done {count['done']}, failed {count['failed']}, skipped {count['skipped']}{kept}; "
        f"{sum(v['frames_out'] for v in summary.videos)} frames, "
        f"{sum(v['faces_restored'] for v in summary.videos)} face-frames restored in {summary.seconds:.1f} s "
        f"(DP-TempCoh on {'GPU' if summary.restore_on_gpu else 'CPU'}); "
        f"catalog: {join(summary.output, 'catalog')}"
    )
    return lines
