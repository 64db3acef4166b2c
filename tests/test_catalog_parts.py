"""The catalog while a run goes on: append-only parts, readable as datasets, compacted at the end."""
from __future__ import annotations

import pandas as pd
from test_catalog import clip_row, track_row, video_row

from pipeline.catalog import read_catalog
from pipeline.catalog_parts import CatalogParts, compact_catalog, part_names, parts_folder
from pipeline.run import RunSummary, format_summary


def add(parts: CatalogParts, video_id: str, status: str = "done", clips: int = 2) -> None:
    parts.add(video_row(video_id, status, clips=clips),
              [clip_row(video_id, index, 10 * index, 10 * index + 10) for index in range(clips)],
              [track_row(video_id, index, 0) for index in range(clips)])  # fmt: skip


def test_parts_are_appended_and_read_as_one_table_while_the_run_goes_on(tmp_path):
    out = str(tmp_path / "out")
    parts = CatalogParts(out, every_s=3600, max_videos=2)
    add(parts, "a")
    assert part_names(out, "videos") == []  # buffered
    add(parts, "b")  # two videos: a part
    add(parts, "c")
    parts.flush()
    assert len(part_names(out, "videos")) == len(part_names(out, "clips")) == 2
    videos = pd.read_parquet(parts_folder(out, "videos"))  # one logical table over the parts
    assert sorted(videos.video_id) == ["a", "b", "c"]
    assert len(pd.read_parquet(parts_folder(out, "clips"))) == 6
    assert parts.bytes_written > 0


def test_compaction_keeps_each_videos_latest_rows_in_the_manifests_order_and_removes_the_parts(tmp_path):
    out = str(tmp_path / "out")
    first = CatalogParts(out, max_videos=100)
    add(first, "a", "failed", clips=3)
    add(first, "b")
    first.flush()
    second = CatalogParts(out, max_videos=100)  # a later run: a retried, b kept, c new
    second.prefix = "part-9999999999-later"
    add(second, "a", "done", clips=2)
    add(second, "c")
    second.flush()
    orphan = CatalogParts(out)  # a run killed between its clips part and its videos part
    orphan.prefix = "part-9999999999-zkilled"
    orphan.rows["clips"].append(clip_row("b", 7, 0, 10))
    orphan.videos = 1
    from pipeline.catalog import CLIPS_FILE, CLIPS_SCHEMA, _table, write_parquet

    write_parquet(_table(CLIPS_FILE, CLIPS_SCHEMA, orphan.rows["clips"]),
                  f"{parts_folder(out, 'clips')}/{orphan.prefix}-000000.parquet")  # fmt: skip

    manifest = pd.DataFrame({"video_id": ["c", "b", "a"], "uri": ["/c", "/b", "/a"], "reel": [3, 2, 1]})
    assert compact_catalog(out, ["c", "b", "a"], manifest) > 0
    catalog = read_catalog(out)
    assert list(catalog.videos.video_id) == ["c", "b", "a"]
    assert list(catalog.videos.status) == ["done", "done", "done"]  # a's retry replaced its failure
    assert list(catalog.videos.reel) == [3, 2, 1]  # the manifest's own columns
    assert catalog.clips.groupby("video_id").size().to_dict() == {"a": 2, "b": 2, "c": 2}  # no orphan
    assert list(catalog.tracks.video_id) == ["c", "c", "b", "b", "a", "a"]
    assert all(part_names(out, table) == [] for table in ("videos", "clips", "tracks"))


def test_the_summary_shows_totals_and_the_first_failures_with_where_the_rest_are():
    summary = RunSummary("/out", 12.5, False)
    for index in range(25):
        summary.add(video_row(f"v{index:02d}", "failed", faces_restored=0))
    summary.add(video_row("fine"))
    lines = format_summary(summary)
    assert lines[0].startswith("done 1, failed 25, skipped 0; 114 frames, 88 face-frames restored in 12.5 s")
    assert lines[1] == "failed:" and lines[2] == "  v00: restore: RuntimeError: out of memory"
    assert len(lines) == 2 + 20 + 1
    assert lines[-1] == ("  ... and 5 more: /out/catalog/videos.parquet lists every video with its status "
                         "and error")


def test_a_run_writes_at_most_twice_the_final_catalogs_bytes(tmp_path):
    """Parts as a run appends them (a part per 500 videos here), then the compacted files: the catalog
    is never rewritten whole while the run goes on, so its bytes stay within 2x the final catalog."""
    out = str(tmp_path / "out")
    parts = CatalogParts(out, every_s=3600, max_videos=500)
    ids = [f"reel-{index:05d}" for index in range(3000)]
    for index, video_id in enumerate(ids):
        add(parts, video_id, "failed" if index % 10 == 9 else "done", clips=1 + index % 4)
    parts.flush()
    final = compact_catalog(out, ids)
    assert len(read_catalog(out).videos) == 3000
    assert parts.bytes_written + final <= 2 * final, (parts.bytes_written, final)


def test_parts_of_an_older_version_without_the_stability_columns_compact_with_them_as_nulls(tmp_path):
    """A run of an earlier version left parts whose tracks lack the stability columns (issue 13); a run of
    today compacts them beside its own parts, the missing values null."""
    import pyarrow.parquet as pq

    from pipeline.catalog import TRACKS_SCHEMA, write_parquet

    out = str(tmp_path / "out")
    old = CatalogParts(out, max_videos=100)
    add(old, "a")
    old.flush()
    old_tracks = f"{parts_folder(out, 'tracks')}/{part_names(out, 'tracks')[0]}"
    write_parquet(pq.read_table(old_tracks).select(TRACKS_SCHEMA.names[:9]), old_tracks)  # as it was
    assert "warp_error_before" not in pd.read_parquet(old_tracks).columns
    new = CatalogParts(out, max_videos=100)
    new.prefix = "part-9999999999-later"
    new.add(video_row("b"), [clip_row("b", 0, 0, 10)], [{**track_row("b", 0, 0), "warp_error_before": 1.5}])
    new.flush()
    compact_catalog(out, ["a", "b"])
    tracks = read_catalog(out).tracks
    assert list(tracks.video_id) == ["a", "a", "b"]
    assert tracks.warp_error_before.isna().tolist() == [True, True, False]
    assert tracks.warp_error_before.iloc[2] == 1.5
