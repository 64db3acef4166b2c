"""Commands that only read records, catalogs and manifests start without torch; the catalog stands alone."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import json, sys
from click.testing import CliRunner
from pipeline.cli import main
out, manifest, videos = sys.argv[1:]
runner = CliRunner()
codes = [runner.invoke(main, args).exit_code for args in (
    ["status", out], ["status", out, "--json"],
    ["manifest", "build", videos, "-o", manifest], ["manifest", "check", manifest],
    ["report", out],  # 2: records but no catalog yet
)]
heavy = sorted(name for name in ("torch", "torchvision", "facexlib", "ray", "cv2") if name in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_status_manifest_and_report_commands_do_not_import_torch(tmp_path):
    from pipeline.state import RunState

    state = RunState(tmp_path / "out")
    state.record_run("run-1", [{"video_id": "film", "uri": "/archive/film.mp4"}], "key")
    state.record_video("key-film", {"video_id": "film", "uri": "/archive/film.mp4", "status": "done",
                                    "frames_in": 10, "frames_out": 10, "faces_restored": 4, "clips": 1,
                                    "error": ""}, [], [])  # fmt: skip
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "film.mp4").write_bytes(b"\0" * 64)
    command = [sys.executable, "-c", CHECK, str(tmp_path / "out"), str(tmp_path / "m.parquet"), str(videos)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0, 2], "heavy": []}


def test_the_catalog_does_not_import_the_faces_report():
    names = ("pipeline.faces_report", "pipeline.faces", "torch")
    script = f"import sys, pipeline.catalog; print([m for m in {names} if m in sys.modules])"
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
