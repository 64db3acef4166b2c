"""The catalogs of a run: what happened to every video, clip and face track, as Parquet under OUT/catalog/.

    OUT/catalog/videos.parquet   one row per input video (VIDEOS_SCHEMA + the manifest's own columns)
    OUT/catalog/clips.parquet    one row per scene clip (CLIPS_SCHEMA)
    OUT/catalog/tracks.parquet   one row per face track, a summary (TRACKS_SCHEMA)
    OUT/run.json                 settings, package versions, weights, times, host and command line

OUT is a local folder or an fsspec URL (s3://bucket/run-1). Every file is written under a temporary
name in its folder and renamed into place, so a reader never sees half a file; `write_catalog` checks
all rows against the schemas before it writes anything. The schemas carry a `meaning` for each column
(Arrow field metadata, kept in the files), which `schema_markdown` renders for the README.
"""
from __future__ import annotations

import json
import platform
import socket
import sys
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.faults import fault_point
from pipeline.storage import filesystem, join, write_atomically

CATALOG_DIR = "catalog"
VIDEOS_FILE = "videos.parquet"
CLIPS_FILE = "clips.parquet"
TRACKS_FILE = "tracks.parquet"
RUN_FILE = "run.json"
STATUSES = ("done", "failed", "skipped")
EXTRA_PREFIX = "manifest_"
VERSIONED_PACKAGES = ("dpt-batch", "torch", "ray", "facexlib", "pyarrow")
MEANING = b"meaning"

Row = Mapping[str, Any]


def _field(name: str, type_: pa.DataType, meaning: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={MEANING: meaning.encode()})


REQUIRED = False
# Types shared with the per-frame tracks report of `dpt-batch faces` (pipeline.faces_report).
CLIP_INDEX = pa.int32()
SCENE = pa.int32()
TRACK_ID = pa.int32()
FRAME = pa.int64()
SCORE = pa.float32()

VIDEOS_SCHEMA = pa.schema(
    [
        _field("video_id", pa.string(), "id from the manifest (or derived from the uri)", REQUIRED),
        _field("uri", pa.string(), "the source video: local path or URL, as in the manifest", REQUIRED),
        _field("status", pa.string(), "done, failed or skipped", REQUIRED),
        _field("output_uri", pa.string(), "the restored film (OUT/videos/VIDEO_ID.mp4); empty unless done"),
        _field("frames_in", pa.int64(), "video frames in the source"),
        _field("frames_out", pa.int64(), "video frames in the restored film (equals frames_in when done)"),
        _field("fps", pa.float64(), "frame rate in frames per second, as a float (exact: fps_rational)"),
        _field("fps_rational", pa.string(), 'exact frame rate as "numerator/denominator", e.g. "24000/1001"'),
        _field("duration_s", pa.float64(), "source duration in seconds (frames_in / frame rate)"),
        _field("width", pa.int32(), "frame width in pixels (display orientation)"),
        _field("height", pa.int32(), "frame height in pixels (display orientation)"),
        _field("clips", pa.int32(), "scene clips the video was cut into"),
        _field("tracks", pa.int32(), "face tracks found (restored or not)"),
        _field("faces_restored", pa.int64(), "face-frames restored: the frames of all restored tracks"),
        _field("seconds_probe", pa.float64(), "seconds spent probing the source and finding its cuts"),
        _field("seconds_faces", pa.float64(), "seconds spent detecting, tracking and aligning faces"),
        _field("seconds_restore", pa.float64(), "seconds spent in the DP-TempCoh network"),
        _field("seconds_encode", pa.float64(), "seconds spent pasting faces back, encoding, joining"),
        _field("seconds_total", pa.float64(), "wall-clock seconds from the video's start to its catalog row"),
        _field("error", pa.string(), "why the video failed or was skipped (stage: error); empty when done"),
        _field("weights", pa.string(), "identity of the network weights used (sha256, or synthetic:SEED)"),
    ]
)
"""videos.parquet, before the manifest's own columns (appended after these, with their own types)."""

CLIPS_SCHEMA = pa.schema(
    [
        _field("video_id", pa.string(), "the clip's video", REQUIRED),
        _field("clip_index", CLIP_INDEX, "position of the clip in its video, from 0", REQUIRED),
        _field("start", FRAME, "first frame of the clip", REQUIRED),
        _field("end", FRAME, "one past the clip's last frame", REQUIRED),
        _field("frames", pa.int64(), "end - start", REQUIRED),
        _field("scene", SCENE, "shot the clip belongs to (a long shot is split into several clips)"),
        _field("tracks", pa.int32(), "face tracks found in the clip"),
        _field("faces_restored", pa.int64(), "face-frames restored in the clip"),
        _field("status", pa.string(), "done, failed or skipped", REQUIRED),
        _field("error", pa.string(), "why the clip failed (stage: error); empty when done"),
        _field("artifact", pa.string(), "the clip's encoded segment (OUT/state/segments, removed when done)"),
        _field("nodes", pa.string(), "stage:NODE of each stage that worked on the clip (Ray node id, 8 hex)"),
    ]
)
"""clips.parquet: one row per scene clip of every video."""

TRACKS_SCHEMA = pa.schema(
    [
        _field("video_id", pa.string(), "the track's video", REQUIRED),
        _field("clip_index", CLIP_INDEX, "the track's clip in its video", REQUIRED),
        _field("track_id", TRACK_ID, "the track's id within its clip", REQUIRED),
        _field("first_frame", FRAME, "first video frame of the track", REQUIRED),
        _field("last_frame", FRAME, "last video frame of the track (inclusive)", REQUIRED),
        _field("frames", pa.int64(), "frames the track covers", REQUIRED),
        _field("restored", pa.bool_(), "whether DP-TempCoh restored the track", REQUIRED),
        _field("skip_reason", pa.string(), "why the track was not restored; empty when restored"),
        _field("mean_score", SCORE, "mean detector score over the frames where it was detected"),
        # temporal stability (pipeline.faces.stability), null unless restored: 0..255 grey levels over
        # the face ellipse of 128x128 copies of the aligned crops
        _field("warp_error_before", pa.float32(), "temporal warping error of the input crops: mean abs "
               "difference over the face mask of each crop warped onto the next with dense optical flow "
               "(OpenCV DIS), 0-255; null unless restored"),
        _field("warp_error_after", pa.float32(), "the same for the restored crops, warped with the input's "
               "flows (lower than before: restoration steadied the face; higher: it flickers)"),
        _field("change_before", pa.float32(), "mean frame-to-frame abs change of the input crops over the "
               "face mask, 0-255 (motion included)"),
        _field("change_after", pa.float32(), "mean frame-to-frame abs change of the restored crops, 0-255"),
        _field("landmark_jitter", pa.float32(), "mean frame-to-frame motion of the smoothed landmarks, in "
               "template (512 px) pixels; null in aligned mode"),
        _field("psnr_restored", pa.float32(), "PSNR of the restored vs the input crops over the track (dB): "
               "how much restoration changed the face"),
        _field("worst_frame", FRAME, "video frame of the track's least stable frame (largest warp error "
               "after)"),
        _field("worst_stretch_start", FRAME, "first video frame of the least stable stretch (16 frames, "
               "the flipbook's)"),
        _field("sheet", pa.string(), "the track's before/after contact sheet (JPEG: input row above restored "
               "row), relative to OUT (report/pictures/VIDEO/...); null when not made"),
        _field("flipbook", pa.string(), "input beside restored over the least stable stretch (animated WebP "
               "at the track's frame rate), relative to OUT; null when not made"),
    ]
)
"""tracks.parquet: one summary row per face track (per-frame boxes are in `dpt-batch faces` reports)."""

SCHEMAS = {VIDEOS_FILE: VIDEOS_SCHEMA, CLIPS_FILE: CLIPS_SCHEMA, TRACKS_FILE: TRACKS_SCHEMA}


class CatalogError(ValueError):
    """Rows do not fit a catalog schema, or a catalog can't be read; the message names file, row, column."""


@dataclass(frozen=True)
class Catalog:
    """A run's catalogs as read back: one DataFrame per Parquet file, and run.json (None if absent)."""

    videos: pd.DataFrame
    clips: pd.DataFrame
    tracks: pd.DataFrame
    run: dict[str, Any] | None


def catalog_path(out: str, name: str) -> str:
    """OUT/catalog/NAME for a local folder or URL."""
    return join(out, CATALOG_DIR, name)


def write_catalog(
    out: str,
    videos_rows: Sequence[Row],
    clips_rows: Sequence[Row],
    tracks_rows: Sequence[Row],
    manifest_extra_columns: pd.DataFrame | pa.Table | Sequence[str] | None = None,
) -> dict[str, str]:
    """Write videos.parquet, clips.parquet and tracks.parquet under OUT/catalog/, each atomically.

    Args:
        out: the run's output folder or URL.
        videos_rows, clips_rows, tracks_rows: dicts with the fields of VIDEOS_SCHEMA, CLIPS_SCHEMA and
            TRACKS_SCHEMA; a missing nullable field is written as null, an unknown field is an error.
        manifest_extra_columns: the manifest's own columns for videos.parquet, either as the manifest
            itself (a DataFrame/Table with `video_id`, as `pipeline.manifest.read_manifest` returns it;
            its `uri` and `video_id` are not repeated) joined on video_id, or as a list of column names
            whose values the video rows carry. A manifest column named like a catalog column is
            written as `manifest_NAME`.

    Returns: file name -> location written.

    Raises:
        CatalogError: a row misses a required field, has an unknown one, a value of the wrong type or
            an unknown status; nothing is written then.
    """
    ids = [row["video_id"] for row in videos_rows]
    extras = _extra_columns_table(ids, videos_rows, manifest_extra_columns)
    videos = _table(VIDEOS_FILE, VIDEOS_SCHEMA, videos_rows, allowed_extra=set(extras.column_names))
    clips = _table(CLIPS_FILE, CLIPS_SCHEMA, clips_rows)
    tracks = _table(TRACKS_FILE, TRACKS_SCHEMA, tracks_rows)
    return write_catalog_tables(out, _append_extras(videos, extras), clips, tracks)


def write_catalog_tables(
    out: str,
    videos: pa.Table,
    clips: pa.Table,
    tracks: pa.Table,
    manifest: pd.DataFrame | pa.Table | None = None,
) -> dict[str, str]:
    """Write the three catalog files from Arrow tables with the catalog's schemas (rows checked
    already, as `write_catalog` and the catalog's parts do), joining the manifest's own columns onto
    the videos as `write_catalog` does; returns file name -> location written."""
    if manifest is not None:
        ids = videos.column("video_id").to_pylist()
        videos = _append_extras(videos, _extra_columns_table(ids, [], manifest))
    tables = {VIDEOS_FILE: videos, CLIPS_FILE: clips, TRACKS_FILE: tracks}
    written = {}
    for name, table in tables.items():
        written[name] = write_parquet(table, catalog_path(out, name))
        fault_point("catalog")
    return written


def write_parquet(table: pa.Table, location: str, compression: str = "snappy") -> str:
    """Write a table to a Parquet file (local path or URL) under a temporary name, then rename it."""
    return write_atomically(location, lambda sink: pq.write_table(table, sink, compression=compression))


def read_catalog(out: str) -> Catalog:
    """The catalogs of the run in OUT (local folder or URL), e.g. for tests and `dpt-batch status`.

    Raises:
        CatalogError: a catalog file is missing or unreadable.
    """
    frames = {}
    for name in SCHEMAS:
        location = catalog_path(out, name)
        fs, path = filesystem(location)
        if not fs.isfile(path):
            raise CatalogError(f"{location}: no catalog here; is {out} the output folder of a finished run?")
        try:
            frames[name] = pq.read_table(path, filesystem=fs).to_pandas()
        except (pa.ArrowException, OSError) as error:
            raise CatalogError(f"{location}: not a readable Parquet file: {error}") from None
    return Catalog(frames[VIDEOS_FILE], frames[CLIPS_FILE], frames[TRACKS_FILE], read_run_record(out))


# ---------------------------------------------------------------------------------------------------
# run.json


def run_record(
    settings: Any,
    weights: str,
    started: datetime | float,
    ended: datetime | float,
    command: Sequence[str] | None = None,
    weights_used: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What run.json holds: the settings, package versions, weights identity, times, host and command.

    Args:
        settings: a `pipeline.config.Settings` (or any object with to_dict()) or a plain dict.
        weights: identity of the network weights (sha256 or synthetic:SEED).
        started, ended: datetimes, or seconds since the epoch (time.time()); written in UTC ISO 8601.
        command: the command line; sys.argv when None.
        weights_used: setting -> where its weights came from and their sha256 (network, detector,
            parser), as `pipeline.context.RunContext.weights_used` gives it.
    """
    start, end = _utc(started), _utc(ended)
    return {
        "config": settings.to_dict() if hasattr(settings, "to_dict") else dict(settings),
        "versions": package_versions(),
        "weights": weights,
        "weights_used": dict(weights_used or {}),
        "started": start.isoformat(),
        "ended": end.isoformat(),
        "seconds": round((end - start).total_seconds(), 3),
        "hostname": socket.gethostname(),
        "command": list(sys.argv if command is None else command),
    }


def write_run_record(out: str, record: Mapping[str, Any]) -> str:
    """Write OUT/run.json atomically; returns its location."""
    text = json.dumps(record, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomically(join(out, RUN_FILE), lambda sink: sink.write(text.encode()))


def read_run_record(out: str) -> dict[str, Any] | None:
    """OUT/run.json as a dict, or None when the run wrote none."""
    fs, path = filesystem(join(out, RUN_FILE))
    if not fs.isfile(path):
        return None
    return json.loads(fs.cat_file(path))


def package_versions() -> dict[str, str]:
    """Versions of python and of the packages that shape a run's output."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


# ---------------------------------------------------------------------------------------------------
# documentation


def schema_markdown(schema: pa.Schema = VIDEOS_SCHEMA) -> str:
    """A markdown table (column | type | meaning) of a catalog schema, for the README."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    for field in schema:
        meaning = (field.metadata or {}).get(MEANING, b"").decode()
        kind = str(field.type).replace("double", "float64").replace("bool", "boolean")
        lines.append(f"| `{field.name}` | {kind} | {meaning.replace('|', '/')} |")
    if schema.equals(VIDEOS_SCHEMA):
        lines.append(
            f"| *manifest columns* | as in the manifest | every other manifest column, unchanged "
            f"(`{EXTRA_PREFIX}NAME` if NAME is taken above) |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# rows -> tables


def _table(
    name: str, schema: pa.Schema, rows: Sequence[Row], allowed_extra: Set[str] = frozenset()
) -> pa.Table:
    known = set(schema.names)
    columns: dict[str, list[Any]] = {field.name: [] for field in schema}
    for index, row in enumerate(rows):
        unknown = set(row) - known - allowed_extra
        if unknown:
            raise CatalogError(
                f"{name}: row {index} has fields outside the schema: {', '.join(sorted(unknown))}; "
                "add them to the schema in pipeline/catalog.py or leave them out"
            )
        for field in schema:
            value = row.get(field.name)
            if value is None and not field.nullable:
                raise CatalogError(f"{name}: row {index} has no {field.name!r}, which is required")
            columns[field.name].append(value)
    if "status" in columns:
        for index, status in enumerate(columns["status"]):
            if status not in STATUSES:
                choices = ", ".join(STATUSES)
                raise CatalogError(f"{name}: row {index} has status {status!r}; use one of {choices}")
    arrays = []
    for field in schema:
        try:
            arrays.append(pa.array(columns[field.name], type=field.type))
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise CatalogError(f"{name}: column {field.name!r} ({field.type}): {error}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def _extra_columns_table(
    video_ids: Sequence[str],
    videos_rows: Sequence[Row],
    extra: pd.DataFrame | pa.Table | Sequence[str] | None,
) -> pa.Table:
    """The manifest's columns, one row per video (`video_ids`, in that order): joined from the manifest,
    or, for a list of names, read from the video rows."""
    if extra is None:
        return pa.table({})
    if isinstance(extra, (pd.DataFrame, pa.Table)):
        table = extra if isinstance(extra, pa.Table) else pa.Table.from_pandas(extra, preserve_index=False)
        if "video_id" not in table.column_names:
            raise CatalogError("manifest_extra_columns: the manifest has no 'video_id' column to join on")
        ids = table.column("video_id").to_pylist()
        position = {str(video_id): index for index, video_id in enumerate(ids)}
        missing = [video_id for video_id in video_ids if video_id not in position]
        if missing:
            shown = ", ".join(missing[:8])
            raise CatalogError(f"manifest_extra_columns: video_ids not in the manifest: {shown}")
        table = table.drop_columns([name for name in ("video_id", "uri") if name in table.column_names])
        return table.take(pa.array([position[video_id] for video_id in video_ids], type=pa.int64()))
    names = list(extra)
    try:
        return pa.table({name: pa.array([row.get(name) for row in videos_rows]) for name in names})
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise CatalogError(f"{VIDEOS_FILE}: manifest columns {', '.join(names)}: {error}") from None


def _append_extras(videos: pa.Table, extras: pa.Table) -> pa.Table:
    for field, column in zip(extras.schema, extras.columns, strict=True):
        name = field.name
        if name in VIDEOS_SCHEMA.names:
            name = EXTRA_PREFIX + name
        videos = videos.append_column(field.with_name(name), column)
    return videos


def _utc(moment: datetime | float) -> datetime:
    if isinstance(moment, datetime):
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(moment), tz=timezone.utc)
