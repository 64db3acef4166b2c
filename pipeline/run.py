"""`dpt-batch run`: restore every video of a manifest into an output folder or URL.

    manifest -> run context (pipeline.context) -> the dataset of stages (pipeline.execute)
             -> each video assembled as soon as its last clip arrives (pipeline.assemble)
             -> records (pipeline.state) and catalogs (pipeline.catalog)

The driver holds only the clips of videos in flight, so memory does not grow with film length.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from pipeline.assemble import Row, VideoResult, assemble_video
from pipeline.cluster import ClusterPlan, SetupError, connect
from pipeline.config import Settings
from pipeline.context import RunContext, default_work_root, make_context
from pipeline.lock import RemoteRunLock, RunLock
from pipeline.records import ClipTask, VideoTask
from pipeline.storage import join
from pipeline.watch import STALL_AFTER_S, StallWatch, describe_stall

__all__ = ["RunSummary", "SetupError", "run_archive", "run_manifest", "format_summary"]


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


def progress_line(
    clips_done: int, videos_done: int, videos: int, pending: dict[str, dict[int, ClipTask]]
) -> str:
    """One line of progress while clips come in: counts, and each unfinished video's clips so far."""
    in_flight = ", ".join(
        f"{name} {len(clips)}/{next(iter(clips.values())).clip_count}" for name, clips in pending.items()
    )
    return f"... {clips_done} clips done, {videos_done}/{videos} videos; in flight (clips): {in_flight}"


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
    context: RunContext | None = None,
    stall_after_s: float = STALL_AFTER_S,
) -> RunSummary:
    """Restore every video of `videos` (rows with video_id and uri) into `output` (a folder or URL).

    The run's context (weights, devices, key, work root) is `context`, or made here after connecting
    to Ray at `address` (or using `plan`).

    What an earlier run on `output` finished under the same settings and sources is kept (failed videos
    too, unless `retry_failed`); the rest is done, and every clip and video is recorded under
    OUT/state the moment it is finished. OUT/catalog is rewritten from all videos' rows at most every
    `catalog_every_s` seconds and at the end. `report` gets a line per finished video, and a progress
    line at most every `progress_every_s` seconds while clips of unfinished videos come in, and a line
    saying what the run waits for when no clip has come in for `stall_after_s` seconds."""
    from pipeline.execute import build_dataset
    from pipeline.state import RunState, source_fingerprint, video_key

    started = time.perf_counter()
    output = str(output)
    if context is None:
        context = make_context(settings, plan or connect(settings, address), output,
                               work_root or default_work_root(output))  # fmt: skip
    work_root = Path(context.work_root)
    if not context.plan.restore_on_gpu:
        report("no GPU in the Ray cluster: DP-TempCoh runs on CPU actors")
    state = RunState(output)
    key = context.settings_key
    earlier = state.finished_videos()
    results: dict[str, VideoResult] = {}
    todo: list[VideoTask] = []
    for video in videos:
        fingerprint = source_fingerprint(video["uri"])
        task = VideoTask(video["video_id"], video["uri"], fingerprint,
                         video_key(key, asdict(context.settings.scenes), fingerprint))  # fmt: skip
        record = earlier.get(task.video_id)
        if record and reusable(record, task.video_key, retry_failed):
            results[task.video_id] = VideoResult(record["video"], record["clips"], record["tracks"])
        else:
            todo.append(task)
    state.record_run(context.run_id, videos, key)
    reused = len(results)
    if reused:
        failed = sum(1 for result in results.values() if result.video["status"] == "failed")
        report(
            f"{reused} videos were finished by an earlier run and are kept"
            + (f" ({failed} failed; --retry-failed retries them)" if failed else "")
        )
    catalog = CatalogWriter(output, [video["video_id"] for video in videos], manifest, catalog_every_s)
    sources = {video.video_id: video for video in todo}
    pending: dict[str, dict[int, ClipTask]] = {}
    clips_done, last_progress = 0, time.perf_counter()

    def finish(video_id: str, clips: list[ClipTask], error: str = "") -> None:
        source = sources[video_id]
        result = assemble_video(source, clips, join(output, "videos"), error=error)
        video = result.video
        video["seconds_total"] = time.perf_counter() - started
        state.record_video(source.video_key, video, result.clips, result.tracks)
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
        stalled = partial(describe_stall, work_root=context.work_root, run_id=context.run_id)
        with StallWatch(stalled, report, after_s=stall_after_s) as watch:
            for row in build_dataset(todo, context).iter_rows():
                watch.progress()
                clip = ClipTask.from_row(dict(row))
                clips = pending.setdefault(clip.video_id, {})
                clips[clip.clip_index] = clip  # keyed: a clip delivered twice counts once
                clips_done += clip.clip_index >= 0
                if clip.clip_index >= 0 and len(clips) < clip.clip_count:
                    if time.perf_counter() - last_progress >= progress_every_s:
                        last_progress = time.perf_counter()
                        report(progress_line(clips_done, len(results), len(videos), pending))
                    continue
                finish(clip.video_id, list(pending.pop(clip.video_id).values()))
    for video_id, clips in pending.items():  # clips whose workers kept dying never came back
        count = next(iter(clips.values())).clip_count
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
        restore_on_gpu=context.plan.restore_on_gpu,
        reused=reused,
    )


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
    work_root = Path(work_root or default_work_root(output))
    context = make_context(settings, connect(settings, address), str(output), work_root)
    # A URL output cannot hold an exclusive lock file: its local work folder holds the exclusive lock,
    # and a best-effort lock on the URL refuses runs from other hosts.
    with RunLock(work_root if is_url(output) else output) as lock, (
        RemoteRunLock(str(output)) if is_url(output) else contextlib.nullcontext()
    ) as remote:
        for held in (lock, remote):
            if held is not None and held.stale_owner:
                report(f"the lock of a run that is gone was taken over: {held.stale_owner}")
        summary = run_archive(videos, output, settings, report=report, retry_failed=retry_failed,
                              manifest=manifest, context=context)  # fmt: skip
        record = run_record(settings, context.weights.identity, started, time.time(),
                            weights_used=context.weights_used())  # fmt: skip
        write_run_record(str(output), record)
    return summary


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
