"""`dpt-batch status OUT`: how far the latest run on an output has got, while it runs or after it ended.

Everything comes from what runs record as they go (see `pipeline.state`); nothing is taken or written,
so status may be asked as often as wanted, from any host that can read OUT:

    OUT/state/runs/RUN_ID.json    each run's start: host, pid and how many videos; the latest is reported
    OUT/state/runs/RUN_ID.videos.parquet   the videos of that run
    OUT/state/videos/ID.json      finished videos (done or failed) with their catalog rows
    OUT/state/clips/ID/KEY.json   finished clips of videos still in flight
    OUT/.dpt-batch.lock           the live run's host and pid (a URL output's lies in the run's work folder)
    OUT/run.json                  written as a run ends

A video of the run counts as finished when its record was made during the run, or before it (kept from
an earlier run) unless the run has since finished clips of it again (a failed video retried, or one
whose settings or source changed).
"""
from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.lock import LOCK_FILE, pid_alive, read_lock
from pipeline.state import STATE_DIR, RunState
from pipeline.storage import is_url, join

FAILED_SHOWN = 20
Liveness = tuple[bool | None, str]  # live (None: cannot be told from here), and why, in words
IN_FLIGHT_SHOWN = 8


class NoRunError(ValueError):
    """No dpt-batch run has recorded its start in the output folder."""


@dataclass(frozen=True)
class FailedVideo:
    video_id: str
    error: str


@dataclass(frozen=True)
class VideoInFlight:
    """A video of the run with finished clips and no video record yet."""

    video_id: str
    clips_done: int
    clip_count: int
    frames_done: int  # frames of its finished clips
    frames_in: int  # frames of the whole video


@dataclass
class RunStatus:
    """Progress of the latest run on an output (see `read_status`). Times are seconds since the epoch.

    `live` is True while a process of this host holds the output's lock, False once the run ended
    (run.json written) or stopped (killed, crashed), None when that cannot be told from here (a lock
    held on another host); `liveness` says which, in words."""

    output: str
    run_id: str
    started_at: float
    host: str
    pid: int
    runs: int  # runs recorded on the output, this one included
    live: bool | None
    liveness: str
    ended_at: float | None  # from run.json, when this run wrote it
    videos_total: int
    videos_done: int
    videos_failed: int
    videos_kept: int  # of the done and failed: finished by an earlier run and kept
    videos_pending: int  # no video record yet (in flight or not started)
    in_flight: list[VideoInFlight]
    clips_of_finished_done: int  # clips of the finished videos (done or failed) that are done
    clips_of_finished_failed: int  # clips of the finished videos that failed
    frames_done: int  # encoded frames of finished videos and of finished clips of videos in flight
    faces_restored: int  # face-frames restored, counted the same way
    frames_this_run: int  # of frames_done: those recorded since the run started
    seconds_this_run: float  # from its start to now (to its end once it is not live)
    frames_remaining: int | None  # None while no video's frame count is known
    remaining_estimated: bool  # videos not probed yet are counted at the mean frames per known video
    failed: list[FailedVideo]
    now: float = field(default_factory=time.time)

    @property
    def clips_done(self) -> int:
        return sum(video.clips_done for video in self.in_flight)

    @property
    def clips_total(self) -> int:
        return sum(video.clip_count for video in self.in_flight)

    @property
    def frames_per_second(self) -> float | None:
        """Frames finished during the run per second of it; None before a second has passed."""
        return self.frames_this_run / self.seconds_this_run if self.seconds_this_run > 0 else None

    @property
    def eta_s(self) -> float | None:
        """Seconds until the pending videos are done at the run's throughput so far; None when nothing is
        pending, the run is not live, or there is no throughput or frame count to go by yet."""
        fps = self.frames_per_second
        if not self.videos_pending or self.live is False or not fps or self.frames_remaining is None:
            return None
        return self.frames_remaining / fps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (for `dpt-batch status --json`), derived figures included."""
        return {
            **asdict(self),
            "clips_done": self.clips_done,
            "clips_total": self.clips_total,
            "frames_per_second": self.frames_per_second,
            "eta_s": self.eta_s,
        }


def read_status(output: str, now: float | None = None, work_dir: str | Path | None = None) -> RunStatus:
    """The status of the latest run on `output` (a local folder or URL) at time `now` (default: now).

    Args:
        output: the run's --output.
        now: seconds since the epoch; the throughput of a live run is measured up to it.
        work_dir: for a URL output, the run's --work-dir, where its lock lies (default: the work folder
            `dpt-batch run` picks for that URL on this host). Unused for a local output.

    Raises:
        NoRunError: no run has recorded its start in `output`.
    """
    now = time.time() if now is None else now
    state = RunState(output)
    runs = state.runs()
    if not runs:
        raise NoRunError(
            f"no dpt-batch run has written to {output} (no run records in "
            f"{join(output, STATE_DIR, 'runs')}); is it the --output of a run?"
        )
    run = runs[-1]
    started = float(run["started_at"])
    ended_at = _run_json_end(output, started)
    live, liveness = _liveness(run, _lock_holder(output, work_dir), ended_at, remote=is_url(output))
    video_ids = state.run_video_ids(run)
    progress = _Progress(run, video_ids, state.finished_videos(), state.clip_records())
    # a run that is over is measured up to its end (or its last record), not up to now
    end = now if live is not False else max([ended_at or started, *progress.finish_times])
    remaining = progress.frames_remaining()
    return RunStatus(
        output=str(output),
        run_id=str(run.get("run_id", "")),
        started_at=started,
        host=str(run.get("host", "")),
        pid=_int(run.get("pid")),
        runs=len(runs),
        live=live,
        liveness=liveness,
        ended_at=ended_at,
        videos_total=len(video_ids),
        videos_done=progress.count("done"),
        videos_failed=progress.count("failed"),
        videos_kept=progress.kept,
        videos_pending=len(progress.unfinished),
        in_flight=progress.in_flight,
        clips_of_finished_done=progress.clips_by_status["done"],
        clips_of_finished_failed=progress.clips_by_status["failed"],
        frames_done=progress.frames_done,
        faces_restored=progress.faces_restored,
        frames_this_run=progress.frames_this_run,
        seconds_this_run=max(0.0, end - started),
        frames_remaining=remaining,
        remaining_estimated=progress.unprobed > 0 and remaining is not None,
        failed=progress.failed,
        now=now,
    )


class _Progress:
    """The latest run's videos sorted into finished and unfinished, and their frames counted."""

    def __init__(
        self, run: dict, video_ids: list[str], records: dict[str, dict], clip_records: dict[str, list[dict]]
    ) -> None:
        started = float(run["started_at"])
        self.finished: list[dict] = []  # video records
        self.unfinished: list[str] = []
        self.in_flight: list[VideoInFlight] = []
        self.kept = self.frames_done = self.faces_restored = self.frames_this_run = 0
        self.clips_by_status = {"done": 0, "failed": 0}
        self.finish_times: list[float] = []
        for video_id in video_ids:
            record = records.get(video_id)
            clips = _latest_per_clip(clip_records.get(video_id, []))
            recorded_at = float(record.get("finished_at", 0)) if record else 0.0
            redone = any(float(clip.get("finished_at", 0)) >= started for clip in clips)
            if record and (recorded_at >= started or not redone):
                self._add_finished(record, recorded_at >= started)
                continue
            self.unfinished.append(video_id)
            if clips:
                self._add_in_flight(video_id, clips, started)
        self.failed = [
            FailedVideo(record["video"]["video_id"], str(record["video"].get("error", "")))
            for record in self.finished
            if record["video"].get("status") == "failed"
        ]

    def _add_finished(self, record: dict, this_run: bool) -> None:
        video = record["video"]
        self.finished.append(record)
        for clip in record.get("clips", []):
            status = "done" if clip.get("status") == "done" else "failed"
            self.clips_by_status[status] += 1
        if video.get("status") == "done":
            frames = _int(video.get("frames_out"))
        else:  # the clips it encoded before it failed
            clips = record.get("clips", [])
            frames = sum(_int(clip.get("frames")) for clip in clips if clip.get("status") == "done")
        self.frames_done += frames
        self.faces_restored += _int(video.get("faces_restored"))
        if this_run:
            self.frames_this_run += frames
            self.finish_times.append(float(record["finished_at"]))
        else:
            self.kept += 1

    def _add_in_flight(self, video_id: str, clips: list[dict], started: float) -> None:
        frames = [_int(clip.get("frames_out")) for clip in clips]
        self.in_flight.append(
            VideoInFlight(
                video_id=video_id,
                clips_done=len(clips),
                clip_count=max(_int(clip.get("clip_count")) for clip in clips),
                frames_done=sum(frames),
                frames_in=max(_int(clip.get("frames_in")) for clip in clips),
            )
        )
        self.frames_done += sum(frames)
        self.faces_restored += sum(_int(clip.get("faces")) for clip in clips)
        for clip, count in zip(clips, frames, strict=True):
            if float(clip.get("finished_at", 0)) >= started:
                self.frames_this_run += count
                self.finish_times.append(float(clip["finished_at"]))

    def count(self, status: str) -> int:
        return sum(1 for record in self.finished if record["video"].get("status") == status)

    @property
    def unprobed(self) -> int:
        """Unfinished videos without a finished clip: their frame counts are not known here."""
        return len(self.unfinished) - len(self.in_flight)

    def frames_remaining(self) -> int | None:
        known = [_int(record["video"].get("frames_in")) for record in self.finished]
        known += [video.frames_in for video in self.in_flight]
        known = [frames for frames in known if frames > 0]
        remaining = sum(max(0, video.frames_in - video.frames_done) for video in self.in_flight)
        if not self.unprobed:
            return remaining
        if not known:
            return None
        return remaining + round(self.unprobed * sum(known) / len(known))


def _latest_per_clip(clips: list[dict]) -> list[dict]:
    """One record per clip index, the latest (records under other settings may share an index)."""
    latest: dict[int, dict] = {}
    for clip in sorted(clips, key=lambda clip: float(clip.get("finished_at", 0))):
        latest[_int(clip.get("clip_index"))] = clip
    return [latest[index] for index in sorted(latest)]


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _run_json_end(output: str, started: float) -> float | None:
    """When run.json says a run ended, if that run is the one that started at `started`."""
    from pipeline.catalog import read_run_record

    try:
        record = read_run_record(output)
        ended = datetime.fromisoformat(record["ended"]).timestamp() if record else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ended if ended is not None and ended >= started else None


def _lock_holder(output: str, work_dir: str | Path | None) -> dict | None:
    """The lock's owner: in OUT for a local output, in the run's work folder for a URL."""
    if not is_url(output):
        return read_lock(output)
    if work_dir is None:
        from pipeline.context import default_work_root

        work_dir = default_work_root(output)
    return read_lock(work_dir)


def _liveness(run: dict, holder: dict | None, ended_at: float | None, remote: bool) -> Liveness:
    """(live, why) of the latest run from the lock's owner and run.json's end."""
    if holder is None:
        if ended_at is not None:
            return False, f"ended {_clock(ended_at)}"
        if remote:
            return None, f"no {LOCK_FILE} in this host's work folder for it: if it runs, it runs elsewhere"
        return False, "stopped before it finished (killed, crashed or interrupted); rerun it to go on"
    pid, host = _int(holder.get("pid")), str(holder.get("host", ""))
    if not pid or not host:
        return None, f"its {LOCK_FILE} cannot be read"
    if host != socket.gethostname():
        return None, f"its lock names pid {pid} on {host}, which cannot be checked from here"
    if not pid_alive(pid):
        if ended_at is not None:
            return False, f"ended {_clock(ended_at)}"
        return False, f"killed or crashed: its lock names pid {pid}, which is gone; rerun it to go on"
    if pid != _int(run.get("pid")) or host != run.get("host"):
        return True, f"pid {pid} holds the lock: a new run that has not recorded its start yet"
    return True, f"pid {pid} on {host} is running"


# ---------------------------------------------------------------------------------------------------
# the report


def format_status(status: RunStatus) -> list[str]:
    """A short report: the run, its videos, frames and throughput, ETA, and a table of failed videos."""
    lines = [
        f"{status.output}: run {status.run_id} ({_ordinal(status.runs)} on this output), started "
        f"{_clock(status.started_at)} ({_duration(status.now - status.started_at)} ago) "
        f"by pid {status.pid} on {status.host}",
        f"{_live_word(status.live)}: {status.liveness}",
        f"videos: {status.videos_total} in the run: {status.videos_done} done, "
        f"{status.videos_failed} failed, {status.videos_pending} pending ({len(status.in_flight)} in flight)"
        + (f"; {status.videos_kept} of the finished kept from earlier runs" if status.videos_kept else ""),
    ]
    pending_clips = status.clips_total - status.clips_done
    lines.append(
        f"clips: {status.clips_of_finished_done + status.clips_done} done, "
        f"{status.clips_of_finished_failed} failed, {pending_clips} pending in videos in flight"
        + (f" (and those of {_count(status.videos_pending - len(status.in_flight), 'video')} not split yet)"
           if status.videos_pending > len(status.in_flight) else "")
    )  # fmt: skip
    if status.in_flight:
        videos = status.in_flight[:IN_FLIGHT_SHOWN]
        shown = ", ".join(f"{video.video_id} {video.clips_done}/{video.clip_count}" for video in videos)
        more = len(status.in_flight) - IN_FLIGHT_SHOWN
        shown += f", ... and {more} more" if more > 0 else ""
        lines.append(f"clips of videos in flight: {status.clips_done}/{status.clips_total} done ({shown})")
    fps = status.frames_per_second
    lines.append(
        f"frames: {status.frames_done} done, {status.faces_restored} face-frames restored; this run: "
        f"{status.frames_this_run} frames in {_duration(status.seconds_this_run)}"
        + (f", {fps:.1f} frames/s" if fps is not None else "")
    )
    lines.append(_eta_line(status))
    if status.failed:
        lines.append(f"failed videos ({len(status.failed)}):")
        lines.append(f"  {'video_id':<32} error")
        for video in status.failed[:FAILED_SHOWN]:
            lines.append(f"  {video.video_id:<32} {_one_line(video.error)}")
        if len(status.failed) > FAILED_SHOWN:
            more = len(status.failed) - FAILED_SHOWN
            lines.append(f"  ... and {more} more (catalog/videos.parquet lists them all)")
    return lines


def _eta_line(status: RunStatus) -> str:
    if not status.videos_pending:
        return "remaining: nothing, every video of the run is finished"
    frames, pending = status.frames_remaining, _count(status.videos_pending, "video")
    about = f"~{frames}" if status.remaining_estimated else f"{frames}"
    if status.live is False:
        return f"remaining: {pending} ({about} frames), but the run is not live"
    if frames is None:
        return f"ETA: unknown until a video is probed ({pending} pending)"
    if status.eta_s is None:
        return f"ETA: unknown until the run has finished frames ({about} frames remaining)"
    unprobed = status.videos_pending - len(status.in_flight)
    estimate = (
        f"; an estimate: {_count(unprobed, 'video')} not probed yet taken at the mean frames of the videos "
        "known so far"
        if status.remaining_estimated
        else ""
    )
    unchecked = " if it still runs" if status.live is None else ""
    return f"ETA: {_duration(status.eta_s)}{unchecked} for {about} frames remaining{estimate}"


def _live_word(live: bool | None) -> str:
    return {True: "live", False: "not live"}.get(live, "live: unknown")


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _one_line(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
