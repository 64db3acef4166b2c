"""The input manifest: checked before any work starts, ids derived from uris, built from folders, buckets."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.manifest import ManifestError, build_manifest, derive_video_id, extra_columns, read_manifest


def write_manifest(path: Path, columns: dict[str, list], types: dict[str, pa.DataType] | None = None) -> Path:
    types = types or {}
    table = pa.table({name: pa.array(values, type=types.get(name)) for name, values in columns.items()})
    pq.write_table(table, path)
    return path


def fake_videos(root: Path, names: list[str]) -> list[Path]:
    """Files with video names (their bytes are not read by the manifest)."""
    paths = []
    for index, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * (100 + index))
        paths.append(path)
    return paths


def test_manifest_with_ids_keeps_its_own_columns_and_their_types(tmp_path):
    manifest = write_manifest(
        tmp_path / "archive.parquet",
        {
            "title": ["Reel 1", "Reel 2", None],
            "uri": ["/films/r1.mov", "s3://bucket/r2.mp4", "relative/r3.mkv"],
            "video_id": ["r1", "r2", "r3"],
            "year": [1962, None, 1971],
        },
        {"year": pa.int32()},
    )

    videos = read_manifest(manifest)

    assert list(videos.columns) == ["video_id", "uri", "title", "year"]
    assert extra_columns(videos) == ["title", "year"]
    assert videos["video_id"].tolist() == ["r1", "r2", "r3"]
    assert videos["uri"].tolist() == [
        "/films/r1.mov", "s3://bucket/r2.mp4", str(Path.cwd() / "relative/r3.mkv"),
    ]  # fmt: skip
    assert str(videos["year"].dtype) == "Int32" and videos["year"].isna().tolist() == [False, True, False]
    assert videos.attrs["manifest"] == str(manifest)


def test_ids_derived_from_uris_are_readable_stable_and_tell_same_names_apart(tmp_path):
    uris = ["/archive/1962/a.mp4", "/archive/1963/a.mp4", "s3://bucket/reels/Reel 4 (final).MOV"]
    manifest = write_manifest(tmp_path / "m.parquet", {"uri": uris})

    ids = read_manifest(manifest)["video_id"].tolist()

    assert ids == [derive_video_id(uri) for uri in uris]
    assert ids[0] != ids[1] and ids[0].startswith("a-") and ids[1].startswith("a-")
    assert ids[2].startswith("Reel_4_final-")
    assert all(len(video_id.rsplit("-", 1)[1]) == 8 for video_id in ids)
    assert read_manifest(manifest)["video_id"].tolist() == ids  # deterministic


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"path": ["a.mp4"]}, ["no 'uri' column", "columns: path", "manifest build"]),
        ({"uri": ["a.mp4", None, "c.mp4", " "]}, ["column 'uri'", "null or empty", "rows 1, 3"]),
        ({"uri": [1, 2]}, ["column 'uri'", "not strings"]),
        (
            {"uri": ["a.mp4", "b.mp4", "c.mp4"], "video_id": ["x", "y", "x"]},
            ["column 'video_id'", "'x' in rows 0, 2", "unique"],
        ),
        ({"uri": ["a.mp4", "b.mp4"], "video_id": ["x", None]}, ["'video_id'", "row 1 ", "null or empty"]),
        ({"uri": ["a.mp4", "b.mp4"], "video_id": ["ok", "../up"]}, ["column 'video_id'", "row 1: '../up'"]),
        ({"uri": ["/x/a.mp4", "/x/b.mp4", "/x/a.mp4"]}, ["'uri'", "'/x/a.mp4' in rows 0, 2", "video_id"]),
    ],
    ids=["no-uri", "blank-uri", "int-uri", "duplicate-id", "null-id", "unsafe-id", "duplicate-uri"],
)
def test_bad_manifests_are_refused_naming_file_column_and_rows(tmp_path, columns, expected):
    manifest = write_manifest(tmp_path / "bad.parquet", columns)

    with pytest.raises(ManifestError) as raised:
        read_manifest(manifest)

    message = str(raised.value)
    assert str(manifest) in message
    for part in expected:
        assert part in message, message


def test_missing_or_unreadable_manifest_files_are_refused(tmp_path):
    with pytest.raises(ManifestError, match="file not found.*manifest build"):
        read_manifest(tmp_path / "absent.parquet")
    (tmp_path / "notes.parquet").write_text("uri\na.mp4\n")
    with pytest.raises(ManifestError, match="not a readable Parquet file"):
        read_manifest(tmp_path / "notes.parquet")


def test_build_scans_folders_and_globs_for_videos_only(tmp_path):
    root = tmp_path / "archive"
    videos = fake_videos(root, ["1962/a.mp4", "1963/a.MOV", "1963/deep/b.mkv", "c.webm", "d.mxf", "e.ts"])
    fake_videos(root, ["notes.txt", "1962/a.srt", ".cache/x.mp4", "1963/._a.MOV"])
    os.utime(videos[0], (1_600_000_000, 1_600_000_000))
    output = tmp_path / "out" / "archive.parquet"

    built = build_manifest([root, str(root / "1962" / "*.mp4")], output)

    assert built["uri"].tolist() == sorted(str(path) for path in videos)  # the glob's match is listed once
    first = built.set_index("uri").loc[str(videos[0])]
    assert first["size_bytes"] == 100
    assert first["modified"] == pd.Timestamp(datetime.fromtimestamp(1_600_000_000, tz=timezone.utc))
    read_back = read_manifest(output)
    assert read_back["video_id"].tolist() == [derive_video_id(uri) for uri in built["uri"]]
    assert extra_columns(read_back) == ["size_bytes", "modified"]
    assert not [name for name in os.listdir(output.parent) if name != "archive.parquet"]  # no temporary left


def test_build_refuses_inputs_that_hold_no_video(tmp_path):
    fake_videos(tmp_path / "docs", ["readme.txt"])
    with pytest.raises(ManifestError, match="no video files found"):
        build_manifest([tmp_path / "docs"], tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="no such file or folder"):
        build_manifest([tmp_path / "absent"], tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_cli_builds_and_checks_a_manifest(tmp_path):
    fake_videos(tmp_path / "films", ["a.mp4", "b.mov", "skip.txt"])
    output = tmp_path / "archive.parquet"
    runner = CliRunner()

    built = runner.invoke(main, ["manifest", "build", str(tmp_path / "films"), "-o", str(output)])
    assert built.exit_code == 0, built.output
    assert "found 2 videos" in built.output and str(output) in built.output

    checked = runner.invoke(main, ["manifest", "check", str(output)])
    assert checked.exit_code == 0, checked.output
    assert "2 videos" in checked.output and "size_bytes, modified" in checked.output

    failed = runner.invoke(main, ["manifest", "build", str(tmp_path / "nothing-here"), "-o", str(output)])
    assert failed.exit_code == 1 and "no such file or folder" in failed.output


def test_build_and_read_a_manifest_in_s3(moto_s3, tmp_path):
    s3 = fsspec.filesystem("s3")
    for key in ("films/1962/a.mp4", "films/1963/a.mp4", "films/1963/notes.txt", "films/b.mov"):
        s3.pipe_file(f"archive/{key}", b"\0" * 64)

    everything = build_manifest(["s3://archive/films/"], "s3://archive/manifests/all.parquet")
    only_mp4 = build_manifest(["s3://archive/films/*/*.mp4"], "s3://archive/manifests/mp4.parquet")

    assert everything["uri"].tolist() == [
        "s3://archive/films/1962/a.mp4", "s3://archive/films/1963/a.mp4", "s3://archive/films/b.mov",
    ]  # fmt: skip
    assert only_mp4["uri"].tolist() == everything["uri"].tolist()[:2]
    assert everything["size_bytes"].tolist() == [64, 64, 64]
    assert everything["modified"].notna().all()
    videos = read_manifest("s3://archive/manifests/all.parquet")
    assert videos["uri"].tolist() == everything["uri"].tolist()
    assert videos["video_id"].nunique() == 3
    assert s3.ls("archive/manifests") == ["archive/manifests/all.parquet", "archive/manifests/mp4.parquet"]


def test_a_saved_dataframe_index_is_not_taken_for_rows_or_columns(tmp_path):
    frame = pd.DataFrame({"uri": ["/a/one.mp4", "/a/two.mp4", "/a/three.mp4"],
                          "video_id": ["one", "two", "three"], "reel": [1, 2, 3]})  # fmt: skip
    filtered = tmp_path / "filtered.parquet"
    frame[frame.reel > 1].to_parquet(filtered)  # saves the row numbers 1, 2 as an index
    videos = read_manifest(filtered)
    assert list(videos.columns) == ["video_id", "uri", "reel"]
    assert list(videos.video_id) == ["two", "three"] and list(videos.uri) == ["/a/two.mp4", "/a/three.mp4"]
    indexed = tmp_path / "indexed.parquet"
    frame.set_index("video_id").to_parquet(indexed)  # video_id saved as pandas' index
    assert list(read_manifest(indexed).video_id) == ["one", "two", "three"]
