"""`dpt-batch run`: restore every video of a manifest into an output folder or URL.

    manifest -> run context (pipeline.context) -> the dataset of stages (pipeline.execute)
             -> each video assembled by a Ray task as soon as its last clip arrives (pipeline.assemble)
             -> records (pipeline.state) and catalogs (pipeline.catalog)

The driver holds only the records of the clips of videos in flight (never frames, crops or film
bytes), so its memory does not grow with film length.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pandas as pd

from pipeline.assemble import Row, assemble_task, assemble_video, where
from pipeline.catalog_parts import CatalogParts, compact_catalog
from pipeline.cluster import ClusterPlan, SetupError, connect
from pipeline.config import Settings
from pipeline.context import RunContext, default_work_root, make_context
from pipeline.encoders import check_encoder_on_nodes
from pipeline.lock import RemoteRunLock, RunLock
from pipeline.records import ClipTask, VideoTask, describe_error
from pipeline.storage import join
from pipeline.watch import STALL_AFTER_S, StallWatch, describe_stall

__all__ = ["RunSummary", "SetupError", "run_archive", "run_manifest", "format_summary"]


FAILURES_LISTED = 20


@dataclass
class RunSummary:
    """What a run did: its totals and its first failures (for the summary and the exit code). Its
    rows are in the catalog, which `videos`, `clips` and `tracks` read back.

    Attributes:
        counts: videos per status (done, failed, skipped), kept ones included.
        frames, face_frames: frames written and face-frames restored, over every video.
        failures: (video_id, error) of the first FAILURES_LISTED failed videos.
        reused: videos whose records from an earlier run were kept (`reused_failed` of them failed).
        catalog_bytes: bytes of catalog written over the run (parts and compacted files).
    """

    output: str
    seconds: float
    restore_on_gpu: bool
    counts: Counter = field(default_factory=Counter)
    frames: int = 0
    face_frames: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    reused: int = 0
    reused_failed: int = 0
    catalog_bytes: int = 0

    def add(self, video: Row) -> None:
        self.counts[video["status"]] += 1
        self.frames += int(video["frames_out"])
        self.face_frames += int(video["faces_restored"])
        if video["status"] == "failed" and len(self.failures) < FAILURES_LISTED:
            self.failures.append((video["video_id"], video["error"]))

    def keep(self, video: Row) -> None:
        """Count a video whose earlier record was kept."""
        self.add(video)
        self.reused += 1
        self.reused_failed += video["status"] == "failed"

    def kept_line(self) -> str:
        failed = self.reused_failed
        return (f"{self.reused} videos were finished by an earlier run and are kept"
                + (f" ({failed} failed; --retry-failed retries them)" if failed else ""))  # fmt: skip

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    @property
    def videos(self) -> list[Row]:
        return self._catalog().videos.to_dict("records")

    @property
    def clips(self) -> list[Row]:
        return self._catalog().clips.to_dict("records")

    @property
    def tracks(self) -> list[Row]:
        return self._catalog().tracks.to_dict("records")

    def _catalog(self):
        from pipeline.catalog import read_catalog

        return read_catalog(self.output)


def progress_line(
    clips_done: int, videos_done: int, videos: int, pending: dict[str, dict[int, ClipTask]]
) -> str:
    """One line of progress while clips come in: counts, and each unfinished video's clips so far."""
    in_flight = ", ".join(
        f"{name} {len(clips)}/{next(iter(clips.values())).clip_count}" for name, clips in pending.items()
    )
    return f"... {clips_done} clips done, {videos_done}/{videos} videos; in flight (clips): {in_flight}"


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
    too, unless `retry_failed`): the probe stage finds it, one video at a time, and hands its rows back
    (`take_kept`), so that the driver's start does not grow with the archive. The rest is done, and
    every clip and video is recorded under OUT/state the moment it is finished. The catalog grows by a
    part at most every `catalog_every_s` seconds and is compacted at the end (pipeline.catalog_parts).
    `report` gets a line per finished video, a progress line at most every `progress_every_s` seconds
    while clips of unfinished videos come in, and a line saying what the run waits for when no clip has
    come in for `stall_after_s` seconds. The driver holds the clips of the videos in flight, not the rows
    of finished ones."""
    started = time.perf_counter()
    output = str(output)
    if context is None:
        context = make_context(settings, plan or connect(settings, address), output,
                               work_root or default_work_root(output))  # fmt: skip
    context = replace(context, retry_failed=retry_failed)
    if not context.plan.restore_on_gpu:
        threads = context.settings.cluster.restore_cpu_threads
        each = f"{threads} torch thread{'s' if threads > 1 else ''}" if threads else "every CPU of its node"
        report(f"no GPU in the Ray cluster: DP-TempCoh runs on CPU actors, each on {each} "
               "(cluster.restore_cpu_threads)")
    check_encoder_on_nodes(context.settings.encode, context.plan.gpus)
    with detectors_for(context, report) as context:
        return _run(videos, output, context, report, progress_every_s, catalog_every_s, manifest,
                    stall_after_s, started)  # fmt: skip


@contextlib.contextmanager
def detectors_for(context: RunContext, report: Callable[[str], None]):
    """The context with its detector actors started when the plan detects on the GPUs (stopped when
    the run ends); otherwise the context as it is."""
    if not context.plan.detect_on_gpu or context.detectors is not None:
        yield context
        return
    from pipeline.faces.remote import start_detectors

    try:
        detectors = start_detectors(context.settings.faces, context.plan.gpus)
    except TimeoutError as error:
        raise SetupError(f"{error}: set faces.device=cpu to detect on the faces actors' CPUs") from None
    report(f"face detection on {len(detectors.services)} GPU(s), beside restoration")
    try:
        yield replace(context, detectors=detectors)
    finally:
        detectors.stop()


def _run(videos, output, context, report, progress_every_s, catalog_every_s, manifest, stall_after_s,
         started) -> RunSummary:  # fmt: skip
    """run_archive's work, once its context is settled."""
    from pipeline.execute import build_dataset
    from pipeline.state import RunState

    work_root = Path(context.work_root)
    state = RunState(output)
    summary = RunSummary(output, 0.0, context.plan.restore_on_gpu)
    parts = CatalogParts(output, every_s=catalog_every_s)
    todo = [VideoTask(video["video_id"], video["uri"]) for video in videos]
    state.record_run(context.run_id, videos, context.settings_key)
    sources = {video.video_id: video for video in todo}
    pending: dict[str, dict[int, ClipTask]] = {}
    clips_done, last_progress = 0, time.perf_counter()

    assemble = assemble_task()
    assembling: dict = {}  # the Ray task assembling a video -> (its source, its clips)

    def finish(video_id: str, clips: list[ClipTask], error: str = "") -> None:
        """Start the assembly of a video whose clips are all in, on a worker."""
        source = sources.pop(video_id)
        task = assemble.options(scheduling_strategy=where(clips)).remote(
            source, clips, join(output, "videos"), error, str(context.work_dir(video_id))
        )
        assembling[task] = (source, clips)

    def collect(wait: bool = False) -> None:
        """Record the videos whose assembly has ended (all of them, waiting, when `wait`)."""
        import ray

        if not assembling:
            return
        ready, _ = ray.wait(list(assembling), num_returns=len(assembling), timeout=None if wait else 0)
        for task in ready:
            source, clips = assembling.pop(task)
            try:
                result = ray.get(task)
            except Exception as failure:  # its worker died every time: the video fails, the run goes on
                error = f"assemble: {describe_error(failure)}"
                result = assemble_video(source, clips, join(output, "videos"), error=error)
            record(source, result)

    def record(source: VideoTask, result) -> None:
        video, video_id = result.video, source.video_id
        video["seconds_total"] = time.perf_counter() - started
        state.record_video(source.video_key, video, result.clips, result.tracks)
        parts.add(video, result.clips, result.tracks)
        summary.add(video)
        if video["status"] == "done":
            state.forget_clips(video_id)
            shutil.rmtree(work_root / video_id, ignore_errors=True)
        report(
            f"[{summary.finished}/{len(videos)}] {video_id}: {video['status']}, "
            f"{video['frames_out']} frames, {video['tracks']} tracks, "
            f"{video['faces_restored']} face-frames restored"
            + (f" ({video['error']})" if video["error"] else "")
        )

    if todo:
        stalled = partial(describe_stall, work_root=context.work_root, run_id=context.run_id)
        with StallWatch(stalled, report, after_s=stall_after_s) as watch:
            for row in build_dataset(todo, context).iter_rows():
                watch.progress()
                collect()
                clip = ClipTask.from_row(dict(row))
                if take_kept(clip, parts, summary, sources):
                    continue
                clips = pending.setdefault(clip.video_id, {})
                clips[clip.clip_index] = clip  # keyed: a clip delivered twice counts once
                clips_done += clip.clip_index >= 0
                if clip.clip_index >= 0 and len(clips) < clip.clip_count:
                    if time.perf_counter() - last_progress >= progress_every_s:
                        last_progress = time.perf_counter()
                        report(progress_line(clips_done, summary.finished, len(videos), pending))
                    continue
                finish(clip.video_id, list(pending.pop(clip.video_id).values()))
    for video_id, clips in pending.items():  # clips whose workers kept dying never came back
        count = next(iter(clips.values())).clip_count
        lost = sorted(set(range(count)) - set(clips))
        shown = ", ".join(map(str, lost[:10])) + (" ..." if len(lost) > 10 else "")
        error = f"run: {len(lost)} of {count} clips were lost (clips {shown}); --retry-failed tries again"
        finish(video_id, list(clips.values()), error=error)
    collect(wait=True)
    if summary.reused:
        report(summary.kept_line())
    parts.flush()
    compacted = compact_catalog(output, [video["video_id"] for video in videos], manifest)
    summary.catalog_bytes = parts.bytes_written + compacted
    summary.seconds = time.perf_counter() - started
    return summary


def take_kept(
    clip: ClipTask, parts: CatalogParts, summary: RunSummary, sources: dict[str, VideoTask]
) -> bool:
    """Take a record from the stages: a video kept from an earlier run goes to the catalog parts and the
    summary as recorded, with nothing recorded again (returns True); of any other, the driver learns
    the video's key, which the probe stage worked out (returns False)."""
    if clip.kept:
        rows = json.loads(clip.kept)
        parts.add(rows["video"], rows["clips"], rows["tracks"])
        summary.keep(rows["video"])
        sources.pop(clip.video_id, None)
        return True
    source = sources.get(clip.video_id)
    if source is not None and clip.video_key and source.video_key != clip.video_key:
        sources[clip.video_id] = replace(source, video_key=clip.video_key)
    return False


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
    """The totals of a run and its first failures (the catalog lists every video)."""
    count = summary.counts
    kept = f" ({summary.reused} kept from an earlier run)" if summary.reused else ""
    catalog = join(summary.output, "catalog")
    lines = [
        f"done {count['done']}, failed {count['failed']}, skipped {count['skipped']}{kept}; "
        f"{summary.frames} frames, {summary.face_frames} face-frames restored in {summary.seconds:.1f} s "
        f"(DP-TempCoh on {'GPU' if summary.restore_on_gpu else 'CPU'}); catalog: {catalog}"
    ]
    if summary.failures:
        lines.append("failed:")
        lines.extend(f"  {video_id}: {error}" for video_id, error in summary.failures)
        more = summary.failed - len(summary.failures)
        if more > 0:
            lines.append(f"  ... and {more} more: {join(catalog, 'videos.parquet')} lists every video with "
                         "its status and error")  # fmt: skip
    return lines
