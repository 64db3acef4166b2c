"""A run decides its run-wide values once, on the driver: the network's weights are hashed once for the
whole process tree, and `auto` precision is keyed as the precision it takes on the actors. The first
run is on a Ray of one CPU, which the stage pools share."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, os, sys
from pathlib import Path
import pandas as pd
import ray
from pipeline.config import load_settings
from pipeline.run import run_manifest

manifest, output, weights, precision, detector, log, cpus = sys.argv[1:]
name = os.path.basename(weights)

def log_weights_reads():
    # every open of the weights file in this process, with the function that opened it
    import os, sys
    def audit(event, args):
        if event != "open" or not isinstance(args[0], (str, os.PathLike)):
            return
        if not os.fspath(args[0]).endswith(name):
            return
        frame, opener = sys._getframe(1), "other"
        while frame is not None:
            if frame.f_code.co_name in ("file_sha256", "load_state_dict_file"):
                opener = frame.f_code.co_name
                break
            frame = frame.f_back
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {opener}\\n")
    sys.addaudithook(audit)

log_weights_reads()
ray.init(num_cpus=int(cpus), include_dashboard=False, log_to_driver=False,
         runtime_env={"worker_process_setup_hook": log_weights_reads})
overrides = [f"model.weights={weights}", f"model.precision={precision}", f"faces.detector_weights={detector}"]
settings = load_settings(Path("configs/smoke.yaml"), overrides)
summary = run_manifest(pd.read_parquet(manifest), output, settings, report=lambda line: None)
print(json.dumps({"reused": summary.reused, "status": [v["status"] for v in summary.videos],
                  "driver": os.getpid()}))
"""


def run(tmp_path: Path, manifest: Path, weights: Path, precision: str, detector: Path, log: Path,
        cpus: int = 2) -> dict:  # fmt: skip
    command = [sys.executable, "-c", RUN, str(manifest), str(tmp_path / "out"), str(weights), precision,
               str(detector), str(log), str(cpus)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def reads(log: Path) -> list[tuple[int, str]]:
    return [(int(pid), opener) for pid, opener in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny network's synthetic seed-0 weights as a checkpoint file given by an explicit path."""
    import torch

    from model.registry import build_model
    from model.weights import fill_synthetic_

    path = tmp_path_factory.mktemp("weights") / "tiny_net_g.pth"
    torch.save({"params_ema": fill_synthetic_(build_model("tiny"), 0).state_dict()}, path)
    return path


def test_weights_are_hashed_once_and_auto_on_cpu_keeps_what_fp32_made(
    demo_archive, shared_dir, tiny_checkpoint, tmp_path
):
    manifest = tmp_path / "film_b.parquet"
    videos = pd.read_parquet(demo_archive)
    videos[videos.video_id == "film_b"].to_parquet(manifest)
    detector = shared_dir / "weights" / "retinaface_mobile0.25.pth"

    first_log = tmp_path / "first.log"
    # on a Ray of one CPU, too small for a CPU per stage actor: the actors share it (plan_cluster)
    first = run(tmp_path, manifest, tiny_checkpoint, "auto", detector, first_log, cpus=1)
    assert first["status"] == ["done"] and first["reused"] == 0
    hashed = [pid for pid, opener in reads(first_log) if opener == "file_sha256"]
    loaded = [pid for pid, opener in reads(first_log) if opener == "load_state_dict_file"]
    assert hashed == [first["driver"]]  # once, on the driver; no actor hashes it again
    assert loaded and first["driver"] not in loaded  # the restoration actor loads it
    film = tmp_path / "out" / "videos" / "film_b.mp4"
    made = film.stat().st_mtime_ns

    # auto on CPU actors is fp32: the same settings key, so the rerun keeps the film and its clips
    second = run(tmp_path, manifest, tiny_checkpoint, "fp32", detector, tmp_path / "second.log")
    assert second == {"reused": 1, "status": ["done"], "driver": second["driver"]}
    assert film.stat().st_mtime_ns == made
