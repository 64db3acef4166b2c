"""The catalogs: explicit schemas, round trips through Parquet (local and S3), atomic writes, run.json."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.catalog import (
    CLIPS_SCHEMA,
    TRACKS_SCHEMA,
    VIDEOS_SCHEMA,
    CatalogError,
    read_catalog,
    run_record,
    schema_markdown,
    write_catalog,
    write_run_record,
)
from pipeline.config import load_settings
from pipeline.manifest import read_manifest
from pipeline.storage import write_atomically


def video_row(video_id: str, status: str = "done", **changes) -> dict:
    row = {
        "video_id": video_id, "uri": f"/archive/{video_id}.mov", "status": status,
        "output_uri": f"/out/videos/{video_id}.mp4" if status == "done" else "",
        "frames_in": 114, "frames_out": 114 if status == "done" else 0, "fps": 24000 / 1001,
        "fps_rational": "24000/1001", "duration_s": 4.75475, "width": 1280, "height": 720, "clips": 4,
        "tracks": 3, "faces_restored": 88, "seconds_probe": 0.5, "seconds_faces": 2.0,
        "seconds_restore": 7.5, "seconds_encode": 1.25, "seconds_total": 11.5,
        "error": "" if status == "done" else "restore: RuntimeError: out of memory", "weights": "sha256:ab12",
    }  # fmt: skip
    return {**row, **changes}


def clip_row(video_id: str, index: int, start: int, end: int) -> dict:
    return {
        "video_id": video_id, "clip_index": index, "start": start, "end": end, "frames": end - start,
        "scene": index, "tracks": 1, "faces_restored": end - start, "status": "done", "error": "",
        "artifact": f"/out/state/segments/{video_id}/clip_{index:05d}.mp4",
        "nodes": "probe:0a1b2c3d faces:0a1b2c3d restore:4e5f6a7b encode:0a1b2c3d",
    }  # fmt: skip


def track_row(video_id: str, clip_index: int, track_id: int, restored: bool = True) -> dict:
    stability = {"warp_error_before": 2.5, "warp_error_after": 1.75, "change_before": 6.5,
                 "change_after": 6.25, "landmark_jitter": 0.5, "psnr_restored": 31.5,
                 "worst_frame": 41, "worst_stretch_start": 33,
                 "sheet": f"report/pictures/{video_id}/c{clip_index}t{track_id}-sheet.jpg",
                 "flipbook": f"report/pictures/{video_id}/c{clip_index}t{track_id}-flipbook.webp"}
    return {
        "video_id": video_id, "clip_index": clip_index, "track_id": track_id, "first_frame": 30,
        "last_frame": 57, "frames": 28, "restored": restored,
        "skip_reason": "" if restored else "too small", "mean_score": 0.97,
        **{name: value if restored else None for name, value in stability.items()},
    }  # fmt: skip


@pytest.fixture
def manifest(tmp_path) -> object:
    """A manifest with its own columns: a string, an int with a null, and one named like a catalog column."""
    path = tmp_path / "archive.parquet"
    table = pa.table(
        {
            "uri": ["/archive/reel1.mov", "/archive/reel2.mov"],
            "video_id": ["reel1", "reel2"],
            "collection": ["newsreels", "newsreels"],
            "year": pa.array([1962, None], type=pa.int32()),
            "width": ["35mm", "16mm"],
        }
    )
    pq.write_table(table, path)
    return read_manifest(path)


def some_catalog() -> tuple[list[dict], list[dict], list[dict]]:
    videos = [video_row("reel2", "failed"), video_row("reel1")]
    clips = [clip_row("reel1", 0, 0, 30), clip_row("reel1", 1, 30, 58)]
    tracks = [track_row("reel1", 0, 0), track_row("reel1", 1, 0), track_row("reel1", 1, 1, restored=False)]
    return videos, clips, tracks


def test_catalog_round_trip_keeps_values_schemas_and_manifest_columns(tmp_path, manifest):
    videos, clips, tracks = some_catalog()
    out = tmp_path / "run"

    written = write_catalog(str(out), videos, clips, tracks, manifest)

    assert sorted(Path(path).name for path in written.values()) == [
        "clips.parquet", "tracks.parquet", "videos.parquet",
    ]  # fmt: skip
    schema = pq.read_schema(out / "catalog" / "videos.parquet")
    assert schema.names == [*VIDEOS_SCHEMA.names, "collection", "year", "manifest_width"]
    for field in VIDEOS_SCHEMA:
        assert schema.field(field.name).type == field.type, field.name
        assert schema.field(field.name).metadata[b"meaning"], field.name
    assert schema.field("year").type == pa.int32()
    for name, declared in (("clips.parquet", CLIPS_SCHEMA), ("tracks.parquet", TRACKS_SCHEMA)):
        assert pq.read_schema(out / "catalog" / name).remove_metadata() == declared.remove_metadata()

    catalog = read_catalog(str(out))
    assert catalog.videos[VIDEOS_SCHEMA.names].to_dict("records") == videos
    assert catalog.videos["collection"].tolist() == ["newsreels", "newsreels"]
    assert catalog.videos["year"].isna().tolist() == [True, False]  # reel2 has no year, and comes first
    assert catalog.videos["year"].iloc[1] == 1962
    assert catalog.videos["manifest_width"].tolist() == ["16mm", "35mm"]
    assert catalog.clips.to_dict("records") == clips
    read_tracks = catalog.tracks.to_dict("records")
    assert [{**row, "mean_score": pytest.approx(0.97)} for row in tracks[:2]] == read_tracks[:2]
    assert catalog.tracks.iloc[2][["warp_error_after", "worst_frame", "sheet"]].isna().all()  # not restored
    assert catalog.run is None


def test_manifest_columns_may_ride_on_the_video_rows(tmp_path):
    videos = [video_row("a", collection="home movies", reel=3), video_row("b", collection=None, reel=4)]

    write_catalog(str(tmp_path), videos, [], [], manifest_extra_columns=["collection", "reel"])

    catalog = read_catalog(str(tmp_path))
    assert catalog.videos.columns.tolist()[-2:] == ["collection", "reel"]
    collection = catalog.videos["collection"]
    assert collection.iloc[0] == "home movies" and collection.isna().iloc[1]
    assert catalog.videos["reel"].tolist() == [3, 4]
    assert catalog.clips.empty and catalog.tracks.columns.tolist() == TRACKS_SCHEMA.names


@pytest.mark.parametrize(
    ("table", "row", "message"),
    [
        ("videos", video_row("x", colour="sepia"), "row 0 has fields outside the schema: colour"),
        ("videos", video_row("x", status="finished"), "status 'finished'; use one of done, failed, skipped"),
        ("videos", {k: v for k, v in video_row("x").items() if k != "uri"}, "row 0 has no 'uri'"),
        ("videos", video_row("x", frames_in="many"), "column 'frames_in' (int64)"),
        ("clips", {**clip_row("x", 0, 0, 10), "start": None}, "clips.parquet: row 0 has no 'start'"),
    ],
    ids=["unknown-field", "bad-status", "missing-required", "wrong-type", "null-required"],
)
def test_rows_that_do_not_fit_write_nothing(tmp_path, table, row, message):
    videos, clips, tracks = some_catalog()
    write_catalog(str(tmp_path), videos, clips, tracks)
    before = {path.name: path.read_bytes() for path in (tmp_path / "catalog").iterdir()}
    bad = {"videos": [row], "clips": clips, "tracks": tracks}
    if table == "clips":
        bad.update(videos=videos, clips=[row])

    with pytest.raises(CatalogError) as raised:
        write_catalog(str(tmp_path), bad["videos"], bad["clips"], bad["tracks"])

    assert message in str(raised.value)
    assert {path.name: path.read_bytes() for path in (tmp_path / "catalog").iterdir()} == before


def test_a_writer_that_fails_midway_leaves_the_previous_file_and_no_partial_one(tmp_path):
    videos, clips, tracks = some_catalog()
    write_catalog(str(tmp_path), videos, clips, tracks)
    target = tmp_path / "catalog" / "videos.parquet"
    before = target.read_bytes()
    table = pq.read_table(target)

    def crash_after_half(sink):
        sink.write(before[: len(before) // 2])
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, crash_after_half)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "catalog" / "new.parquet", crash_after_half)

    assert target.read_bytes() == before and pq.read_table(target).equals(table)
    assert sorted(os.listdir(target.parent)) == ["clips.parquet", "tracks.parquet", "videos.parquet"]


def test_run_record_names_settings_versions_weights_times_host_and_command(tmp_path):
    settings = load_settings(overrides=["faces.max_gap=8"])
    started = time.time()
    record = run_record(settings, "sha256:ab12", started, started + 12.5, ["dpt-batch", "run", "m.parquet"])

    write_run_record(str(tmp_path), record)
    write_catalog(str(tmp_path), *some_catalog())

    run = read_catalog(str(tmp_path)).run
    assert run["config"] == settings.to_dict() and run["config"]["faces"]["max_gap"] == 8
    assert set(run["versions"]) >= {"python", "dpt-batch", "torch", "ray", "facexlib", "pyarrow"}
    assert run["versions"]["pyarrow"] == pa.__version__
    assert run["weights"] == "sha256:ab12" and run["seconds"] == 12.5
    assert run["started"] < run["ended"] and run["started"].endswith("+00:00")
    assert run["hostname"] and run["command"] == ["dpt-batch", "run", "m.parquet"]


def test_catalog_and_run_record_round_trip_through_s3(moto_s3, manifest):
    videos, clips, tracks = some_catalog()

    written = write_catalog("s3://archive/runs/1", videos, clips, tracks, manifest)
    write_run_record("s3://archive/runs/1", run_record({"model": {"name": "tiny"}}, "synthetic:0", 0.0, 1.0))

    assert written["videos.parquet"] == "s3://archive/runs/1/catalog/videos.parquet"
    catalog = read_catalog("s3://archive/runs/1")
    assert catalog.videos["video_id"].tolist() == ["reel2", "reel1"]
    assert catalog.videos["collection"].tolist() == ["newsreels", "newsreels"]
    assert len(catalog.clips) == 2 and len(catalog.tracks) == 3
    assert catalog.run["config"] == {"model": {"name": "tiny"}} and catalog.run["weights"] == "synthetic:0"
    import fsspec

    assert sorted(fsspec.filesystem("s3").ls("archive/runs/1/catalog")) == [
        "archive/runs/1/catalog/clips.parquet", "archive/runs/1/catalog/tracks.parquet",
        "archive/runs/1/catalog/videos.parquet",
    ]  # fmt: skip


def test_reading_a_folder_without_a_catalog_says_so(tmp_path):
    with pytest.raises(CatalogError, match="no catalog here"):
        read_catalog(str(tmp_path))


def test_schema_markdown_documents_every_videos_column():
    table = schema_markdown()
    lines = table.splitlines()
    assert lines[0] == "| column | type | meaning |"
    for field in VIDEOS_SCHEMA:
        row = next(line for line in lines if line.startswith(f"| `{field.name}` |"))
        meaning = row.split("|")[3].strip()
        assert meaning, field.name
    assert "| `fps_rational` | string |" in table and "| `fps` | float64 |" in table
    assert "manifest" in lines[-1]
