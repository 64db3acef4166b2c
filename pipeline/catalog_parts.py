"""The catalog while a run goes on: append-only Parquet parts, compacted into the documented files at
the end of the run.

    OUT/catalog/parts/videos/part-STAMP-RUN-SEQ.parquet    rows of the videos finished since the last part
    OUT/catalog/parts/clips/part-STAMP-RUN-SEQ.parquet     their clips
    OUT/catalog/parts/tracks/part-STAMP-RUN-SEQ.parquet    their tracks
    OUT/catalog/videos.parquet, clips.parquet, tracks.parquet   the compacted catalog (pipeline.catalog)

Each parts folder is one table with the catalog's schema (without the manifest's own columns), which
pyarrow, pandas, DuckDB and Spark read as a dataset while the run goes on (`pd.read_parquet(
"OUT/catalog/parts/videos")`, `read_parquet('OUT/catalog/parts/videos/*.parquet')`). A run appends
every video of its manifest, the ones an earlier run finished included, so a video that is done again
(retried, or under changed settings) is in a later part too. Nothing is rewritten while the run goes
on; at its end the parts are compacted into the three documented files (each video's latest rows, in
the manifest's order, with the manifest's columns) and removed. A part's clips and tracks are written
before its videos, so a videos part always has its clips and tracks beside it.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline.catalog import (
    CATALOG_DIR,
    CLIPS_FILE,
    CLIPS_SCHEMA,
    TRACKS_FILE,
    TRACKS_SCHEMA,
    VIDEOS_FILE,
    VIDEOS_SCHEMA,
    _table,
    write_catalog,
    write_parquet,
)
from pipeline.faults import fault_point
from pipeline.storage import filesystem, join

PARTS_DIR = "parts"
# written in this order: a videos part means that its clips and tracks parts are in place
TABLES = {"clips": (CLIPS_FILE, CLIPS_SCHEMA), "tracks": (TRACKS_FILE, TRACKS_SCHEMA),
          "videos": (VIDEOS_FILE, VIDEOS_SCHEMA)}  # fmt: skip
Row = Mapping[str, Any]


def parts_folder(output: str, table: str) -> str:
    return join(output, CATALOG_DIR, PARTS_DIR, table)


class CatalogParts:
    """Buffers the rows of finished videos and appends them as one part per table, every `every_s`
    seconds or `max_videos` videos (and on `flush()`), so that memory holds at most that many."""

    def __init__(self, output: str, every_s: float = 60.0, max_videos: int = 1000) -> None:
        self.output, self.every_s, self.max_videos = output, every_s, max_videos
        # parts sort by the run that wrote them (its start), then by their sequence in the run
        self.prefix = f"part-{int(time.time()):010d}-{uuid.uuid4().hex[:8]}"
        self.sequence = 0
        self.rows: dict[str, list[Row]] = {table: [] for table in TABLES}
        self.videos = 0
        self.last = time.monotonic()
        self.bytes_written = 0

    def add(self, video: Row, clips: Sequence[Row], tracks: Sequence[Row]) -> None:
        self.rows["videos"].append(video)
        self.rows["clips"].extend(clips)
        self.rows["tracks"].extend(tracks)
        self.videos += 1
        if self.videos >= self.max_videos or time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Append the buffered rows as a part of each table (nothing when the buffer is empty)."""
        self.last = time.monotonic()
        if not self.videos:
            return
        name = f"{self.prefix}-{self.sequence:06d}.parquet"
        for table, (file_name, schema) in TABLES.items():
            location = join(parts_folder(self.output, table), name)
            write_parquet(_table(file_name, schema, self.rows[table]), location)
            fs, path = filesystem(location)
            self.bytes_written += fs.size(path)
            fault_point("catalog")
        self.sequence += 1
        self.rows = {table: [] for table in TABLES}
        self.videos = 0


def part_names(output: str, table: str) -> list[str]:
    """The part files of a table, oldest first."""
    fs, folder = filesystem(parts_folder(output, table))
    try:
        names = [path.rsplit("/", 1)[-1] for path in fs.ls(folder, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if name.startswith("part-") and name.endswith(".parquet"))


def compact_catalog(output: str, video_ids: Sequence[str], manifest: pd.DataFrame | None = None) -> int:
    """Write OUT/catalog/{videos,clips,tracks}.parquet from the parts: for each of `video_ids` (in that
    order) the rows of the latest part that holds it; then remove the parts. Returns the bytes written."""
    videos_parts = part_names(output, "videos")
    latest: dict[str, str] = {}
    tables: dict[str, dict[str, list[dict]]] = {table: {} for table in TABLES}
    for name in videos_parts:
        for table in TABLES:
            fs, path = filesystem(join(parts_folder(output, table), name))
            tables[table][name] = pq.read_table(path, filesystem=fs).to_pylist()
        for row in tables["videos"][name]:
            latest[row["video_id"]] = name
    wanted = {video_id: index for index, video_id in enumerate(video_ids)}
    rows: dict[str, list[dict]] = {}
    for table in TABLES:
        rows[table] = [row for name in videos_parts for row in tables[table][name]
                       if row["video_id"] in wanted and latest.get(row["video_id"]) == name]  # fmt: skip
        rows[table].sort(key=lambda row: (wanted[row["video_id"]], row.get("clip_index", 0),
                                          row.get("track_id", 0)))  # fmt: skip
    written = write_catalog(output, rows["videos"], rows["clips"], rows["tracks"], manifest)
    size = 0
    for location in written.values():
        fs, path = filesystem(location)
        size += fs.size(path)
    for table in TABLES:  # every part of every table, orphans of a killed run included
        for name in part_names(output, table):
            fs, path = filesystem(join(parts_folder(output, table), name))
            fs.rm(path)
    return size
