"""What a run has finished, recorded the moment it finishes, so that rerunning the same command after a
crash, a kill -9 or a preemption redoes only what was not finished.

    OUT/state/runs/RUN_ID.json                     a run as it starts: when, where, how many videos
    OUT/state/runs/RUN_ID.videos.parquet           its videos (video_id, uri), in the manifest's order
    OUT/state/videos/VIDEO_ID.json                 a finished video: its catalog rows and its key
    OUT/state/clips/VIDEO_ID/CLIP_KEY.json         a finished clip: its row
    OUT/state/segments/VIDEO_ID/CLIP_KEY.mp4       its encoded segment, which any node can fetch to
                                                   assemble the film (removed once the video is done)

Every record holds `finished_at` (seconds since the epoch) for `dpt-batch status`.

Keys make results impossible to reuse under other settings or another source file:

* the settings key hashes every setting that changes output pixels as it takes effect (the model,
  its weights' sha256, the precision restoration runs in, every face setting with the detector's and
  parser's weights by content, the encoder),
  and leaves out only those known not to (devices, batch sizes);
* a video's key hashes the settings key, the scene settings and the source's fingerprint (size and
  modification time, or the object's ETag), so an edited or replaced source file is processed again;
* a clip's key hashes the settings key, the source's fingerprint and the clip's frame range.

Every record is written through `pipeline.storage.write_atomically` only after the artifact it
describes is in place (segment published under OUT/state/segments; film in OUT/videos), so a
record never points at half a file; a record whose artifact has gone is ignored. OUT may be a local
folder or an fsspec URL (s3://...).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.records import ClipTask
from pipeline.storage import filesystem, is_url, join, write_atomically

STATE_DIR = "state"
KEY_LENGTH = 16
# (section, key) of settings that do not change a single output pixel: never part of a key.
NON_PIXEL_SETTINGS = frozenset(
    {("model", "device"), ("model", "batch_windows"), ("faces", "detect_batch_size"), ("faces", "device")}
)
# Settings that name a file whose content (not its path) is what matters; the run context hashes them.
FILE_SETTINGS = ("faces.detector_weights", "faces.parsing_weights")
EFFECTIVE_PRECISIONS = ("fp32", "bf16", "fp16")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def settings_key(
    settings: Any, weights_identity: str, precision: str, file_digests: Mapping[str, str] | None = None,
    detect_on: str = "cpu",
) -> str:
    """Hash of every pixel-changing setting as it takes effect.

    Args:
        weights_identity: the network weights' sha256 (or synthetic:SEED), so that the same file under
            another path or URL keeps the key.
        precision: the precision restoration runs in (fp32, bf16, fp16), not the setting: `auto` is
            fp32 on CPU actors and bf16 on GPU actors, which restore different pixels.
        file_digests: sha256 of each weights file of the face side that the settings name
            ("faces.detector_weights" ...): their content counts, not their path.
        detect_on: where detection runs ("cpu", or "cuda" in float16, which may move a landmark by a
            fraction of a pixel); a CPU run keys as it always has.
    """
    if precision not in EFFECTIVE_PRECISIONS:
        raise ValueError(f"a settings key needs the precision that takes effect, not {precision!r}")
    digests = dict(file_digests or {})
    values = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
    keyed: dict[str, Any] = {"weights": weights_identity, "model.precision": precision}
    if detect_on != "cpu":
        keyed["faces.detect_on"] = detect_on
    for section, entries in values.items():
        if section == "scenes":
            continue  # scene settings change clip ranges, which clip keys hold; video keys add them
        if section == "cluster":
            continue  # where work runs, not what it makes
        for name, value in entries.items():
            dotted = f"{section}.{name}"
            if (section, name) in NON_PIXEL_SETTINGS or dotted in ("model.weights", "model.precision"):
                continue
            if dotted in FILE_SETTINGS and value:
                if dotted not in digests:
                    raise ValueError(f"a settings key needs the sha256 of {dotted} ({value})")
                value = digests[dotted]
            keyed[dotted] = value
    return _digest(keyed)


def source_fingerprint(uri: str) -> str:
    """size:mtime_ns of a local file, size:ETag (or modification time) of a URL; "" when unreadable
    (the video then fails in its first stage, and a later fixed file gets a new fingerprint)."""
    try:
        if not is_url(uri):
            stat = os.stat(uri)
            return f"{stat.st_size}:{stat.st_mtime_ns}"
        fs, path = filesystem(uri)
        info = fs.info(path)
        version = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        return f"{info.get('size')}:{version}"
    except (OSError, ValueError):
        return ""


def video_key(settings_key_: str, scenes: Mapping[str, Any], fingerprint: str) -> str:
    return _digest({"settings": settings_key_, "scenes": dict(scenes), "source": fingerprint})


def clip_key(settings_key_: str, fingerprint: str, start: int, end: int) -> str:
    """The clip's key: its frame range, readable, then the hash of settings, source and range."""
    return f"{start:08d}-{end:08d}-{_digest([settings_key_, fingerprint, start, end])}"


def reusable(record: Mapping[str, Any], key: str, retry_failed: bool) -> bool:
    """Whether an earlier run's record of a video stands: same key, and done with its film still in
    place, or failed (unless failures are to be retried)."""
    from pipeline.storage import exists

    if record["key"] != key:
        return False
    video = record["video"]
    if video["status"] == "done":
        return bool(video["output_uri"]) and exists(video["output_uri"])
    return not retry_failed


def _read_records(location: str, pattern: str = "*.json") -> list[dict[str, Any]]:
    """The JSON records matching `pattern` under `location` (none if it does not exist), fetched
    together (concurrently on S3 and other async stores); a record that vanished or does not parse
    (a torn write from elsewhere) is skipped."""
    fs, folder = filesystem(location)
    try:
        names = fs.glob(f"{folder}/{pattern}")
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not names:
        return []
    contents = fs.cat(names, on_error="omit")
    records = []
    for name in names:
        try:
            records.append(json.loads(contents[name]))
        except (KeyError, ValueError):
            continue
    return records


def _sizes(location: str) -> dict[str, int]:
    """name -> size of the files in a folder (local or URL), from one listing."""
    fs, folder = filesystem(location)
    try:
        listed = fs.ls(folder, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry.get("size") for entry in listed
            if entry.get("type") == "file"}  # fmt: skip


def _size(location: str) -> int | None:
    """The size of one file (a local path or URL), None if it is not there."""
    fs, path = filesystem(location)
    try:
        return fs.size(path)
    except (FileNotFoundError, OSError):
        return None


class RunState:
    """The records under OUT/state of one output folder (local path or URL)."""

    def __init__(self, output: str | Path) -> None:
        self.root = join(str(output), STATE_DIR)

    # -- clips ---------------------------------------------------------------------------------

    def clip_location(self, video_id: str, key: str) -> str:
        return join(self.root, "clips", video_id, f"{key}.json")

    def segment_location(self, video_id: str, key: str) -> str:
        """Where a finished clip's encoded segment is published (any node can fetch it from there)."""
        return join(self.root, "segments", video_id, f"{key}.mp4")

    def record_clip(self, clip: ClipTask) -> str:
        """Record a finished clip (after its segment is in place); returns the record's location."""
        fs, path = filesystem(clip.segment)
        record = {**clip.recorded(), "segment_bytes": fs.size(path), "finished_at": time.time()}
        text = json.dumps(record, default=str)
        return write_atomically(
            self.clip_location(clip.video_id, clip.clip_key), lambda sink: sink.write(text.encode())
        )

    def finished_clips(self, video_id: str) -> dict[str, ClipTask]:
        """clip key -> recorded clip, for the clips of a video whose segment is still whole (one listing
        of the video's segments, not a request per clip)."""
        records = _read_records(join(self.root, "clips", video_id))
        if not records:
            return {}
        segments = join(self.root, "segments", video_id)
        sizes = _sizes(segments)
        found = {}
        for record in records:
            try:
                folder, _, name = record["segment"].rpartition("/")
                size = sizes.get(name) if folder == segments else _size(record["segment"])
                if size == record["segment_bytes"]:
                    found[record["clip_key"]] = ClipTask.from_record(record)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # unreadable or stale: the clip is simply done again
        return found

    def forget_clips(self, video_id: str) -> None:
        """Drop a video's clip records and segments (once the video's own record holds its rows)."""
        for kind in ("clips", "segments"):
            fs, folder = filesystem(join(self.root, kind, video_id))
            try:
                fs.rm(folder, recursive=True)
            except FileNotFoundError:
                pass

    # -- videos --------------------------------------------------------------------------------

    def video_location(self, video_id: str) -> str:
        return join(self.root, "videos", f"{video_id}.json")

    def record_video(self, key: str, video: Mapping, clips: list, tracks: list) -> str:
        """Record a finished (done or failed) video with its catalog rows."""
        record = {"key": key, "video": video, "clips": clips, "tracks": tracks, "finished_at": time.time()}
        text = json.dumps(record, default=str)
        location = self.video_location(video["video_id"])
        return write_atomically(location, lambda sink: sink.write(text.encode()))

    def video_record(self, video_id: str) -> dict[str, Any] | None:
        """The record of one finished video ({"key", "video", "clips", "tracks"}), or None when there is
        none or it cannot be read (a torn write from elsewhere): one read, whatever the archive's size."""
        fs, path = filesystem(self.video_location(video_id))
        try:
            record = json.loads(fs.cat_file(path))
            return record if record["video"]["video_id"] == video_id else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def finished_videos(self) -> dict[str, dict[str, Any]]:
        """video_id -> record ({"key", "video", "clips", "tracks"}) of every recorded video."""
        records = _read_records(join(self.root, "videos"))
        found = {}
        for record in records:
            try:
                found[record["video"]["video_id"]] = record
            except (OSError, ValueError, KeyError):
                continue
        return found

    # -- runs ----------------------------------------------------------------------------------

    def record_run(self, run_id: str, videos: list[Mapping[str, Any]], settings_key_: str) -> str:
        """Record a run as it starts: its id, host, pid, start time, settings key and how many videos;
        the videos themselves (video_id, uri) go beside it as Parquet, which stays small for 100,000."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"video_id": pa.array([str(video["video_id"]) for video in videos], pa.string()),
                          "uri": pa.array([str(video["uri"]) for video in videos], pa.string())})  # fmt: skip
        videos_file = f"{run_id}.videos.parquet"
        write_atomically(join(self.root, "runs", videos_file), lambda sink: pq.write_table(table, sink))
        record = {
            "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(),
            "settings_key": settings_key_, "videos_count": len(videos), "videos_file": videos_file,
        }  # fmt: skip
        text = json.dumps(record)
        location = join(self.root, "runs", f"{run_id}.json")
        return write_atomically(location, lambda sink: sink.write(text.encode()))

    def run_video_ids(self, run: Mapping[str, Any]) -> list[str]:
        """The video_ids of a recorded run, in its manifest's order (from its videos file, or from the
        record itself for runs recorded before there were videos files)."""
        if "videos_file" not in run:
            return [str(video["video_id"]) for video in run.get("videos", [])]
        import pyarrow.parquet as pq

        fs, path = filesystem(join(self.root, "runs", str(run["videos_file"])))
        try:
            return pq.read_table(path, filesystem=fs, columns=["video_id"]).column("video_id").to_pylist()
        except (OSError, ValueError):
            return []

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run start, oldest first."""
        records = _read_records(join(self.root, "runs"))
        return sorted(records, key=lambda run: run.get("started_at", 0))

    def clip_records(self) -> dict[str, list[dict[str, Any]]]:
        """video_id -> the raw records of its finished clips (videos still in flight), for status."""
        records = _read_records(join(self.root, "clips"), "*/*.json")
        found: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            try:
                found.setdefault(record["video_id"], []).append(record)
            except (OSError, ValueError, KeyError):
                continue
        return found
