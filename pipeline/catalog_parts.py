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

Parts are written with zstd and without the columns' `meaning` metadata (the compacted files carry it):
they are read once, by the compaction, and this halves the catalog bytes a run writes before the
compacted files (which stay Snappy-compressed, as readers of today's layout know them).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    write_catalog_tables,
    write_parquet,
)
from pipeline.faults import fault_point
from pipeline.storage import filesystem, join

PARTS_DIR = "parts"
PART_COMPRESSION = "zstd"
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
            rows = _table(file_name, schema, self.rows[table]).cast(_without_meanings(schema))
            write_parquet(rows, location, compression=PART_COMPRESSION)
            fs, path = filesystem(location)
            self.bytes_written += fs.size(path)
            fault_point("catalog")
        self.sequence += 1
        self.rows = {table: [] for table in TABLES}
        self.videos = 0


def _without_meanings(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.remove_metadata() for field in schema])


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
    order) the rows of the latest part that holds it; then remove the parts. Returns the bytes written.

    The parts are read as Arrow tables, one at a time, and only the rows kept are held: memory grows
    with the catalog's columns, never with a Python object per row."""
    videos_parts = part_names(output, "videos")
    latest = _latest_parts(output, videos_parts)
    order = pa.table({"video_id": pa.array(list(video_ids), pa.string()),
                      "_order": pa.array(np.arange(len(video_ids), dtype=np.int64))})  # fmt: skip
    wanted = latest.join(order, "video_id", join_type="inner")  # video_id, _latest, _order
    tables = {}
    for table, (_, schema) in TABLES.items():
        kept = []
        for index, name in enumerate(videos_parts):
            part = _read_part(output, table, name)
            if part is None:
                continue
            part = _with_columns(part, schema)
            part = part.append_column("_part", pa.array(np.full(len(part), index, dtype=np.int32)))
            joined = part.join(wanted, "video_id", join_type="inner")
            kept.append(joined.filter(pc.equal(joined["_part"], joined["_latest"])).select([*schema.names,
                                                                                              "_order"]))
        rows = pa.concat_tables(kept) if kept else schema.empty_table().append_column(
            "_order", pa.array([], pa.int64()))  # fmt: skip
        keys = ["_order", *(name for name in ("clip_index", "track_id") if name in schema.names)]
        tables[table] = rows.sort_by([(key, "ascending") for key in keys]).select(schema.names).cast(schema)
    written = write_catalog_tables(output, tables["videos"], tables["clips"], tables["tracks"], manifest)
    size = 0
    for location in written.values():
        fs, path = filesystem(location)
        size += fs.size(path)
    for table in TABLES:  # every part of every table, orphans of a killed run included
        for name in part_names(output, table):
            fs, path = filesystem(join(parts_folder(output, table), name))
            fs.rm(path)
    return size


def _latest_parts(output: str, videos_parts: Sequence[str]) -> pa.Table:
    """video_id -> `_latest`: the index (in `videos_parts`) of the last part that holds the video."""
    ids = []
    for index, name in enumerate(videos_parts):
        part = _read_part(output, "videos", name, columns=["video_id"])
        if part is not None:
            ids.append(part.append_column("_part", pa.array(np.full(len(part), index, dtype=np.int32))))
    if not ids:
        return pa.table({"video_id": pa.array([], pa.string()), "_latest": pa.array([], pa.int32())})
    latest = pa.concat_tables(ids).group_by("video_id").aggregate([("_part", "max")])
    return latest.rename_columns(["video_id", "_latest"])


def _with_columns(part: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part with the schema's columns that it lacks added as nulls: parts written by an older version
    (before tracks had stability metrics, say) compact beside today's."""
    for field in schema:
        if field.name not in part.column_names:
            part = part.append_column(field.name, pa.nulls(len(part), field.type))
    return part


def _read_part(output: str, table: str, name: str, columns: list[str] | None = None) -> pa.Table | None:
    """One part of a table (None when it is not there)."""
    fs, path = filesystem(join(parts_folder(output, table), name))
    try:
        return pq.read_table(path, filesystem=fs, columns=columns)
    except FileNotFoundError:
        return None
