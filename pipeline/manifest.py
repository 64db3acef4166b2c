"""The input manifest: which videos a run restores, as a Parquet file.

A manifest has one row per video:

- `uri` (required, string): a local path or any fsspec URL (s3://bucket/films/a.mp4);
- `video_id` (optional, string): the name of the video's outputs (OUT/videos/VIDEO_ID.mp4) and its key
  in the catalogs. When the column is absent, each id is derived from the uri: a readable stem plus
  a short sha1 of the whole uri (`a-1f2e3d4c`), so two a.mp4 in different folders get different ids;
- any other column (title, collection, year ...): carried through unchanged to OUT/catalog/videos.parquet.

`read_manifest` checks all of it before any work starts and raises a ManifestError naming the
manifest, the column, the offending rows and the fix. `build_manifest` (`dpt-batch manifest build`)
writes a manifest from local folders, files, globs or buckets.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import filesystem, is_url, write_atomically

URI = "uri"
VIDEO_ID = "video_id"
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mxf", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
    ".wmv", ".flv", ".3gp", ".ogv", ".vob", ".dv",
)  # fmt: skip
MAX_LISTED = 8
MAX_ID_LENGTH = 200
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f]")
_STEM_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

BUILT_SCHEMA = pa.schema(
    [
        pa.field(VIDEO_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("modified", pa.timestamp("us", tz="UTC")),
    ],
    metadata={
        b"video_id": b"derived from the uri: readable stem + sha1 of the uri (manifest.derive_video_id)",
        b"uri": b"local path or fsspec URL of the video",
        b"size_bytes": b"file size when the manifest was built",
        b"modified": b"last modification time when the manifest was built (UTC)",
    },
)
"""Columns of a manifest written by `build_manifest`."""

# Arrow integer and bool columns become pandas' nullable dtypes, so that a manifest's extra columns
# keep their types (an int column with nulls does not turn into floats) on the way to the catalog.
_NULLABLE_DTYPES = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
}  # fmt: skip


class ManifestError(ValueError):
    """The manifest cannot be read or holds bad rows; the message names the file, column, rows and fix."""


def read_manifest(path_or_url: str | Path) -> pd.DataFrame:
    """The videos of a manifest, validated: columns `video_id`, `uri`, then the manifest's other columns.

    Relative local uris are made absolute against the current directory (workers may run elsewhere);
    ids derived from uris use the uri as written, so they do not depend on where the run starts.
    The manifest's location is kept in `frame.attrs["manifest"]`.

    Raises:
        ManifestError: the file is missing or not Parquet, `uri` is missing, not strings, null or
            empty, a `video_id` is null, empty, unusable as a file name or repeated, or (without
            `video_id`) a uri is repeated.
    """
    source = str(path_or_url)
    table = _read_table(source)
    if URI not in table.column_names:
        raise ManifestError(
            f"manifest {source}: no {URI!r} column (columns: {', '.join(table.column_names) or 'none'}); "
            f"add a {URI!r} column of local paths or URLs, or build one with "
            f"`dpt-batch manifest build FOLDER -o {source}`"
        )
    # A DataFrame's index saved by pandas is not a manifest column: an unnamed one (a filtered frame's
    # row numbers) is dropped, a named one (set_index("video_id")) is kept as the column it names.
    row_numbers = [name for name in table.column_names if re.fullmatch(r"__index_level_\d+__", name)]
    table = table.drop_columns(row_numbers)
    frame = table.to_pandas(types_mapper=_NULLABLE_DTYPES.get, ignore_metadata=True)
    uris = _checked_uris(source, frame[URI], table.schema.field(URI).type)
    if VIDEO_ID in frame.columns:
        ids = _checked_ids(source, frame[VIDEO_ID])
    else:
        fix = f"add a {VIDEO_ID!r} column to tell the rows apart, or drop the copies"
        _reject_duplicates(source, URI, uris, fix)
        ids = [derive_video_id(uri) for uri in uris]
    extras = [column for column in frame.columns if column not in (URI, VIDEO_ID)]
    videos = pd.concat(
        [pd.DataFrame({VIDEO_ID: ids, URI: [_absolute(uri) for uri in uris]}), frame[extras]], axis=1
    )
    videos.attrs["manifest"] = source
    return videos


def extra_columns(manifest: pd.DataFrame) -> list[str]:
    """The manifest's own columns (everything but video_id and uri), in the manifest's order."""
    return [column for column in manifest.columns if column not in (VIDEO_ID, URI)]


def derive_video_id(uri: str) -> str:
    """A stable id for a video from its uri: its file stem made file-name safe, plus 8 hex of sha1(uri).

    "s3://archive/1962/reel 4.mp4" -> "reel_4-" + the first 8 hex digits of sha1 of the whole uri.
    """
    name = PurePosixPath(uri.replace("\\", "/").rstrip("/")).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    readable = _STEM_CHARS.sub("_", stem).strip("._-")[:60] or "video"
    return f"{readable}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"


def build_manifest(paths_or_globs: Iterable[str | Path], output: str | Path) -> pd.DataFrame:
    """Find the video files under folders, globs or URLs and write them as a manifest Parquet.

    Each input may be a local file or folder (searched recursively), a local glob (archive/*/*.mov),
    or the same as an fsspec URL (s3://bucket/prefix/, s3://bucket/prefix/*.mp4). Files are kept when
    their suffix is a video one (VIDEO_SUFFIXES, any case) and their name is not hidden; a file named
    explicitly is always kept. The same file found twice is listed once. Rows are sorted by uri.

    Returns the rows written (schema BUILT_SCHEMA): video_id, uri, size_bytes, modified.

    Raises:
        ManifestError: an input does not exist or matches no video file, or the output can't be written.
    """
    found: dict[str, dict[str, Any]] = {}
    for pattern in paths_or_globs:
        entries = _scan(str(pattern))
        if not entries:
            raise ManifestError(
                f"{pattern}: no video files found (looked for {', '.join(VIDEO_SUFFIXES)}); "
                "check the path, or quote a glob so that the shell does not expand it"
            )
        found.update(entries)
    if not found:
        raise ManifestError("no inputs given: name at least one folder, file or glob")
    rows = [found[uri] for uri in sorted(found)]
    table = pa.Table.from_pylist(
        [{VIDEO_ID: derive_video_id(row[URI]), **row} for row in rows], schema=BUILT_SCHEMA
    )
    try:
        write_atomically(output, lambda sink: pq.write_table(table, sink))
    except (OSError, ValueError) as error:
        raise ManifestError(f"manifest {output}: could not write it: {error}") from None
    return table.to_pandas(types_mapper=_NULLABLE_DTYPES.get)


# ---------------------------------------------------------------------------------------------------
# reading and checking


def _read_table(source: str) -> pa.Table:
    try:
        fs, path = filesystem(source)
    except ValueError as error:
        raise ManifestError(f"manifest {source}: {error}") from None
    try:
        exists = fs.isfile(path)
    except OSError as error:
        raise ManifestError(f"manifest {source}: could not be reached: {error}") from None
    if not exists:
        raise ManifestError(
            f"manifest {source}: file not found; check the path, or build one with "
            f"`dpt-batch manifest build FOLDER_OR_GLOB -o {source}`"
        )
    try:
        return pq.read_table(path, filesystem=fs)
    except (pa.ArrowException, OSError) as error:
        raise ManifestError(
            f"manifest {source}: not a readable Parquet file ({error}); write the manifest with "
            "pandas.DataFrame.to_parquet or `dpt-batch manifest build`"
        ) from None


def _checked_uris(source: str, column: pd.Series, arrow_type: pa.DataType) -> list[str]:
    if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_null(arrow_type)):
        raise ManifestError(
            f"manifest {source}: column {URI!r} holds {arrow_type}, not strings; store paths or URLs as text"
        )
    blank = [row for row, value in enumerate(column) if _is_blank(value)]
    if blank:
        raise ManifestError(
            f"manifest {source}: column {URI!r} is null or empty in {_rows(blank)}; "
            "give every row the path or URL of its video, or drop those rows"
        )
    return [str(value).strip() for value in column]


def _checked_ids(source: str, column: pd.Series) -> list[str]:
    blank = [row for row, value in enumerate(column) if _is_blank(value)]
    if blank:
        raise ManifestError(
            f"manifest {source}: column {VIDEO_ID!r} is null or empty in {_rows(blank)}; "
            f"give those rows an id, or drop the {VIDEO_ID!r} column to derive ids from the uris"
        )
    ids = [str(value).strip() for value in column]
    unsafe = [row for row, value in enumerate(ids) if _UNSAFE_ID.search(value) or value in (".", "..")
              or value.startswith(".") or len(value) > MAX_ID_LENGTH]  # fmt: skip
    if unsafe:
        shown = ", ".join(f"row {row}: {ids[row]!r}" for row in unsafe[:MAX_LISTED])
        raise ManifestError(
            f"manifest {source}: column {VIDEO_ID!r} has values that cannot name output files ({shown}); "
            f"ids name OUT/videos/VIDEO_ID.mp4: use at most {MAX_ID_LENGTH} characters, no '/', '\\' or "
            "control characters, not starting with '.'"
        )
    _reject_duplicates(source, VIDEO_ID, ids, "make every id unique, or drop the rows that repeat a video")
    return ids


def _reject_duplicates(source: str, column: str, values: Sequence[str], fix: str) -> None:
    rows_of: dict[str, list[int]] = {}
    for row, value in enumerate(values):
        rows_of.setdefault(value, []).append(row)
    repeated = {value: rows for value, rows in rows_of.items() if len(rows) > 1}
    if repeated:
        listed = list(repeated.items())[:MAX_LISTED]
        shown = "; ".join(f"{value!r} in {_rows(rows)}" for value, rows in listed)
        more = f" (and {len(repeated) - MAX_LISTED} more)" if len(repeated) > MAX_LISTED else ""
        raise ManifestError(f"manifest {source}: column {column!r} repeats values: {shown}{more}; {fix}")


def _is_blank(value: Any) -> bool:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return True
    return not str(value).strip()


def _rows(rows: Sequence[int]) -> str:
    shown = ", ".join(str(row) for row in rows[:MAX_LISTED])
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more} (counting from 0)"


def _absolute(uri: str) -> str:
    return uri if is_url(uri) else str(Path(uri).expanduser().absolute())


# ---------------------------------------------------------------------------------------------------
# finding videos


def _scan(pattern: str) -> dict[str, dict[str, Any]]:
    """uri -> manifest row for the videos one input names."""
    try:
        fs, path = filesystem(pattern)
    except ValueError as error:
        raise ManifestError(f"{pattern}: {error}") from None
    try:
        if _GLOB_CHARS.search(path):
            entries = fs.glob(path, detail=True)
            files = {}
            for name, info in entries.items():
                if info.get("type") == "directory":
                    files.update(_videos_under(fs, name))
                elif _is_video(name):
                    files[name] = info
        elif fs.isdir(path):
            files = _videos_under(fs, path)
        elif fs.isfile(path):
            files = {path: fs.info(path)}
        else:
            raise ManifestError(f"{pattern}: no such file or folder; check the path or URL")
    except OSError as error:
        raise ManifestError(f"{pattern}: could not be listed: {error}") from None
    return {uri: row for uri, row in (_row(fs, name, info, pattern) for name, info in files.items())}


def _videos_under(fs, folder: str) -> dict[str, dict]:
    found = fs.find(folder, detail=True)
    root = folder.rstrip("/")
    return {
        name: info
        for name, info in found.items()
        if _is_video(name) and not any(part.startswith(".") for part in name[len(root):].split("/"))
    }


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def _row(fs, name: str, info: dict[str, Any], pattern: str) -> tuple[str, dict[str, Any]]:
    uri = name if not is_url(pattern) else fs.unstrip_protocol(name)
    size = info.get("size")
    return uri, {URI: uri, "size_bytes": None if size is None else int(size), "modified": _modified(info)}


def _modified(info: dict[str, Any]) -> datetime | None:
    """Last modification time from an fsspec info dict (keys differ between filesystems)."""
    for key in ("mtime", "LastModified", "last_modified", "modified", "updated", "mtime_ns", "created"):
        value = info.get(key)
        if value is None:
            continue
        if key == "mtime_ns":
            value = value / 1e9
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError):
            continue
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()
    return None
