"""`dpt-batch run`: the Ray Data graph from a manifest to restored films and catalogs.

    manifest -> probe + scene clips -> faces (CPU actors) -> DP-TempCoh (GPU actors, or CPU actors when
    the cluster has no GPU) -> paste-back + encode (CPU actors) -> assemble per video -> catalog

Rows between stages are small records (see `pipeline.stages`); the driver joins each video's encoded
clips with the source's audio and subtitles as soon as its last clip arrives, so memory does not grow
with film length or archive size.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import Settings
from pipeline.lock import RunLock
from pipeline.stages import DetectFaces, PasteAndEncode, RestoreFaces, Row, Stage, describe_error, split_video

# Every clip row carries every field, so that Arrow blocks from different batches share one schema.
ROW_DEFAULTS: dict[str, Any] = {
    "video_id": "", "uri": "", "source": "", "work_dir": "", "clip_index": -1, "clip_count": 0,
    "start": 0, "end": 0, "scene": 0, "frames_in": 0, "fps_num": 0, "fps_den": 1, "width": 0, "height": 0,
    "duration_s": 0.0, "bit_depth": 8, "has_audio": False, "tracks": 0, "faces": 0, "tracks_json": "[]",
    "faces_artifact": "", "restored_artifact": "", "segment": "", "frames_out": 0, "weights": "", "error": "",
    "traceback": "", "seconds_probe": 0.0, "seconds_faces": 0.0, "seconds_restore": 0.0,
    "seconds_encode": 0.0,
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
    """How the stages map onto the cluster's resources."""

    gpus: int
    cpus: int
    faces_actors: int
    restore_actors: int
    encode_actors: int

    @property
    def restore_on_gpu(self) -> bool:
        return self.gpus > 0


def plan_cluster(resources: dict[str, float]) -> ClusterPlan:
    """One restoration actor per GPU (CPU actors when there is none); CPU pools share the CPUs."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    spare = max(1, cpus - gpus)
    return ClusterPlan(
        gpus=gpus,
        cpus=cpus,
        faces_actors=max(1, spare // 2),
        restore_actors=max(1, gpus),
        encode_actors=max(1, spare // 4),
    )


def build_dataset(videos: list[Row], settings: Settings, work_root: str, plan: ClusterPlan):
    """The run as a Ray Data dataset of finished clip rows (lazy until iterated)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    # Rows are small records; a block per row lets each clip stream through the stages on its own and
    # spread over a pool's actors (otherwise a video's clips travel as one block, stage by stage).
    context.target_max_block_size = 1
    # One clip of the official network on a CPU can take longer than Ray's default 30 minutes without
    # output; dead workers are still detected by Ray itself.
    context.execution_no_progress_timeout_s = -1
    gpus_per_actor = 1.0 if plan.restore_on_gpu else 0.0
    dataset = ray.data.from_items(videos)
    dataset = dataset.flat_map(split_video, fn_kwargs={"settings": settings, "work_root": work_root})
    dataset = dataset.map(complete_row)
    dataset = dataset.map_batches(
        StageActor, fn_constructor_args=(DetectFaces, settings), batch_size=1, batch_format="pandas",
        compute=ActorPoolStrategy(min_size=1, max_size=plan.faces_actors),
        num_cpus=DetectFaces.resources.cpus,
    )  # fmt: skip
    dataset = dataset.map_batches(
        StageActor, fn_constructor_args=(RestoreFaces, settings, gpus_per_actor),
        batch_size=max(1, settings.model.batch_windows), batch_format="pandas",
        compute=ActorPoolStrategy(min_size=1, max_size=plan.restore_actors),
        num_cpus=0 if plan.restore_on_gpu else 1, num_gpus=gpus_per_actor,
    )  # fmt: skip
    return dataset.map_batches(
        StageActor, fn_constructor_args=(PasteAndEncode, settings), batch_size=1, batch_format="pandas",
        compute=ActorPoolStrategy(min_size=1, max_size=plan.encode_actors),
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


def assemble_video(source: Row, clips: list[Row], output_dir: Path) -> VideoResult:
    """Join a video's encoded clips with the source's audio/subtitles and check the frame count."""
    from pipeline.media import concat_clips, probe

    clips = sorted(clips, key=lambda row: row["clip_index"])
    first = clips[0]
    fps = Fraction(int(first["fps_num"]), int(first["fps_den"])) if first["fps_num"] else Fraction(0)
    errors = [row["error"] for row in clips if row["error"]]
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
        output = output_dir / f"{source['video_id']}.mp4"
        try:
            concat_clips([row["segment"] for row in clips], output, streams_from=first["source"])
            frames_out = probe(output).frame_count
            if frames_out != video["frames_in"]:
                raise RuntimeError(f"the output has {frames_out} frames, the source {video['frames_in']}")
            video.update(output_uri=str(output), frames_out=frames_out)
        except Exception as error:
            video.update(status="failed", error=f"assemble: {describe_error(error)}")
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
    output: Path
    restore_on_gpu: bool

    @property
    def failed(self) -> int:
        return sum(1 for video in self.videos if video["status"] == "failed")


def progress_line(clips_done: int, videos_done: int, videos: int, pending: dict[str, list[Row]]) -> str:
    """One line of progress while clips come in: counts, and each unfinished video's clips so far."""
    in_flight = ", ".join(f"{name} {len(rows)}/{rows[0]['clip_count']}" for name, rows in pending.items())
    return f"... {clips_done} clips done, {videos_done}/{videos} videos; in flight (clips): {in_flight}"


class SetupError(ValueError):
    """The run cannot start: its weights or devices are not there. Nothing was processed."""


def preflight(settings: Settings, plan: ClusterPlan) -> None:
    """Check on the driver what every actor will need, so that a missing file or device stops the run
    with one clear message before any work, instead of failing actor after actor."""
    from model.weights import WeightsError, resolve_weights
    from pipeline.faces import DetectorWeightsError, FaceDetector

    if settings.model.device == "cuda" and not plan.restore_on_gpu:
        raise SetupError("model.device is 'cuda' but the Ray cluster has no GPU; use 'auto' or 'cpu'")
    try:
        resolve_weights(settings.model.weights)
        FaceDetector.from_settings(settings.faces)
    except (WeightsError, DetectorWeightsError) as error:
        raise SetupError(str(error)) from None


def prepare(settings: Settings, address: str | None) -> ClusterPlan:
    """Connect to Ray, map the stages onto its resources, and check what the actors will need."""
    import ray

    init_ray(address)
    plan = plan_cluster(ray.cluster_resources())
    preflight(settings, plan)
    return plan


def init_ray(address: str | None) -> None:
    """Connect to a cluster at `address`, or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # Stages ask for one CPU per actor; a small machine still needs room for every pool at once.
        ray.init(num_cpus=max(os.cpu_count() or 1, 4), include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False


def run_archive(
    videos: list[Row],
    output: Path,
    settings: Settings,
    address: str | None = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    progress_every_s: float = 30.0,
    plan: ClusterPlan | None = None,
) -> RunSummary:
    """Restore every video of `videos` (rows with video_id and uri) into `output`.

    `report` gets a line per finished video, and a progress line at most every `progress_every_s`
    seconds while clips of unfinished videos come in."""

    started = time.perf_counter()
    output = Path(output)
    work_root = output / "work"
    plan = plan or prepare(settings, address)
    (output / "videos").mkdir(parents=True, exist_ok=True)
    if not plan.restore_on_gpu:
        report("no GPU in the Ray cluster: DP-TempCoh runs on CPU actors")
    sources = {video["video_id"]: video for video in videos}
    pending: dict[str, list[Row]] = {}
    results: list[VideoResult] = []
    clips_done, last_progress = 0, time.perf_counter()
    for row in build_dataset(videos, settings, str(work_root), plan).iter_rows():
        row = complete_row(dict(row))
        clips = pending.setdefault(row["video_id"], [])
        clips.append(row)
        clips_done += row["clip_index"] >= 0
        if row["clip_index"] >= 0 and len(clips) < int(row["clip_count"]):
            if time.perf_counter() - last_progress >= progress_every_s:
                last_progress = time.perf_counter()
                report(progress_line(clips_done, len(results), len(videos), pending))
            continue
        result = assemble_video(sources[row["video_id"]], pending.pop(row["video_id"]), output / "videos")
        results.append(result)
        video = result.video
        video["seconds_total"] = time.perf_counter() - started
        report(
            f"[{len(results)}/{len(videos)}] {video['video_id']}: {video['status']}, "
            f"{video['frames_out']} frames, {video['tracks']} tracks, "
            f"{video['faces_restored']} face-frames restored"
            + (f" ({video['error']})" if video["error"] else "")
        )
        if video["status"] == "done":
            shutil.rmtree(work_root / video["video_id"], ignore_errors=True)
    return RunSummary(
        videos=[result.video for result in results],
        clips=[row for result in results for row in result.clips],
        tracks=[row for result in results for row in result.tracks],
        seconds=time.perf_counter() - started,
        output=output,
        restore_on_gpu=plan.restore_on_gpu,
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
    output: Path,
    settings: Settings,
    address: str | None = None,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> RunSummary:
    """`run_archive` over a validated manifest, then the catalog and run.json under `output`."""
    from pipeline.catalog import run_record, write_catalog, write_run_record

    started = time.time()
    videos = [{"video_id": v, "uri": u} for v, u in zip(manifest["video_id"], manifest["uri"], strict=True)]
    plan = prepare(settings, address)
    with RunLock(output) as lock:
        if lock.stale_owner:
            report(f"the lock of a run that is gone was taken over: {lock.stale_owner}")
        summary = run_archive(videos, output, settings, address=address, report=report, plan=plan)
        write_catalog(str(output), summary.videos, summary.clips, summary.tracks, manifest)
        weights = next((v["weights"] for v in summary.videos if v["weights"]), settings.model.weights or "")
        write_run_record(str(output), run_record(settings, weights, started, time.time()))
    return summary


def format_summary(summary: RunSummary) -> list[str]:
    lines = [f"{'video_id':<32} {'status':<7} {'frames':>8} {'tracks':>7} {'faces':>8} {'seconds':>8}  error"]
    for v in summary.videos:
        lines.append(
            f"{v['video_id']:<32} {v['status']:<7} {v['frames_out']:>8} {v['tracks']:>7} "
            f"{v['faces_restored']:>8} {v['seconds_total']:>8.1f}  {v['error']}"
        )
    count = {s: sum(1 for v in summary.videos if v["status"] == s) for s in ("done", "failed", "skipped")}
    lines.append(
        f"done {count['done']}, failed {count['failed']}, skipped {count['skipped']}; "
        f"{sum(v['frames_out'] for v in summary.videos)} frames, "
        f"{sum(v['faces_restored'] for v in summary.videos)} face-frames restored in {summary.seconds:.1f} s "
        f"(DP-TempCoh on {'GPU' if summary.restore_on_gpu else 'CPU'}); catalog: {summary.output / 'catalog'}"
    )
    return lines
