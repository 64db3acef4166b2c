"""One run over the whole bad-input matrix (tests/bad_inputs.py), with workers killed on the way.

The archive holds every item of the matrix plus `poison`, a good film whose face detection kills its
worker every time (DPT_CRASH_AT=faces@poison), and the run's first restoration also kills its worker
once (DPT_CRASH_AT=restore). The run must finish: every item with its expected status and cause,
the poison film failed for its dying workers, everything else done with every frame. It runs as its
own process tree without the capabilities that let root read a mode 000 file.
"""
from __future__ import annotations

import pandas as pd
import pytest
from bad_inputs import build_bad_inputs, unprivileged_command
from run_support import REPO

from pipeline.catalog import read_catalog
from pipeline.media import probe


@pytest.fixture(scope="module")
def matrix_run(shared_dir, demo_archive, tmp_path_factory):
    import os
    import shutil
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("matrix")
    items = build_bad_inputs(folder / "inputs", shared_dir / "footage")
    poison = folder / "inputs" / "poison.mp4"
    shutil.copyfile(demo_archive.parent / "film_b.mp4", poison)
    manifest = pd.DataFrame(
        {"uri": [str(item.path) for item in items] + [str(poison)],
         "video_id": [item.video_id for item in items] + ["poison"]}
    )  # fmt: skip
    manifest.to_parquet(folder / "archive.parquet")
    faults = folder / "faults"
    faults.mkdir()
    out = folder / "out"
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    command = unprivileged_command(
        [sys.executable, "-m", "pipeline.cli", "run", "--manifest", str(folder / "archive.parquet"),
         "--output", str(out), "--config", "configs/smoke.yaml", "--set", f"faces.detector_weights={weights}"]
    )  # fmt: skip
    env = {**os.environ, "DPT_FAULT_DIR": str(faults), "DPT_CRASH_AT": "restore,faces@poison"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return items, out, faults, result


def test_the_run_finishes_and_says_that_items_failed(matrix_run):
    _, _, faults, result = matrix_run
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    assert (faults / "crashed-restore").exists()  # a restoration worker really died once


def test_every_item_ends_with_its_status_and_cause(matrix_run):
    items, out, _, result = matrix_run
    videos = read_catalog(str(out)).videos.set_index("video_id")
    assert sorted(videos.index) == sorted([item.video_id for item in items] + ["poison"])
    for item in items:
        row = videos.loc[item.video_id]
        assert row["status"] == item.expected_status, (item.video_id, row["error"])
        if item.expected_status == "failed":
            assert item.error_contains in row["error"].lower(), (item.video_id, row["error"])
            assert item.path.name in row["error"], (item.video_id, row["error"])  # names the file
        else:
            assert row["error"] == "" and row["frames_out"] == row["frames_in"] > 0
            assert probe(row["output_uri"]).frame_count == row["frames_in"]


def test_a_clip_that_keeps_killing_its_worker_fails_its_video(matrix_run):
    _, out, _, _ = matrix_run
    catalog = read_catalog(str(out))
    poison = catalog.videos.set_index("video_id").loc["poison"]
    assert poison["status"] == "failed" and "WorkerDiedError" in poison["error"]
    assert "died 3 times" in poison["error"]
    clips = catalog.clips[catalog.clips.video_id == "poison"]
    assert len(clips) >= 1 and (clips.status == "failed").all()
