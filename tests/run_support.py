"""Running `dpt-batch run`: in this process (`run_cli`), or as a separate process tree, stopped at a fault
point and killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from click.testing import CliRunner, Result

from pipeline.catalog import read_catalog
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = ("seconds_probe", "seconds_faces", "seconds_restore", "seconds_encode", "seconds_total")


def stage_operators(context) -> tuple:
    """The Ray Data operators a run with `context` builds for one video, in stage order: probe, faces,
    restore, encode (what each asks of the cluster is in its `ray_remote_args`)."""
    from pipeline.execute import build_dataset
    from pipeline.records import VideoTask

    operators, operator = [], build_dataset([VideoTask("a", "a.mp4")], context)._logical_plan.dag
    while operator.input_dependencies:
        operators.append(operator)
        operator = operator.input_dependencies[0]
    encode, restore, faces = [op for op in operators if type(op).__name__ == "MapBatches"]
    (probe,) = [op for op in operators if type(op).__name__ == "FlatMap"]
    return probe, faces, restore, encode


def run_cli(*args: str) -> Result:
    """`dpt-batch run ARGS` in this process (on an embedded Ray that stays up for the next run)."""
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def smoke_args(shared_dir: Path) -> list[str]:
    """The smoke settings (tiny network, synthetic weights) with the detector's weights from shared_dir."""
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    return ["--config", "configs/smoke.yaml", "--set", f"faces.detector_weights={weights}"]


def start_run(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`dpt-batch run ARGS` in its own session (so that all of its processes can be found and killed)."""
    command = [sys.executable, "-m", "pipeline.cli", "run", *args]
    return subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **(env or {})}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    """Wait until `marker` exists; fail with the run's output if the run ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before {marker.name}:\n"
                                 f"{process.stdout.read()[-4000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            kill_run(process)
            raise AssertionError(f"no {marker.name} after {timeout} s")
        time.sleep(0.2)


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live (not zombie) process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def session_members(session: int) -> list[int]:
    """Pids of the live processes of a session (Ray puts its workers in their own process groups)."""
    return [pid for pid, (_, member_of) in process_table().items() if member_of == session]


def kill_run(process: subprocess.Popen) -> None:
    """kill -9 the run's process group, then every other process of its session (Ray's workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + 30
    while (left := session_members(process.pid)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not session_members(process.pid), "processes of the killed run survived"


def finish_run(process: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    """Wait for a run to end; (exit code, output)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_run(process)
        raise
    return process.returncode, output


def comparable_catalog(out: Path | str) -> dict[str, pd.DataFrame]:
    """The catalogs of a run (a folder or URL) without what differs between two equal runs: timings,
    the nodes that did the work, and the output folder in paths (kept: file names)."""
    catalog = read_catalog(str(out))
    tables = {}
    for name, frame in (("videos", catalog.videos), ("clips", catalog.clips), ("tracks", catalog.tracks)):
        frame = frame.drop(columns=[c for c in (*TIMING_COLUMNS, "nodes") if c in frame.columns])
        for column in ("output_uri", "artifact"):
            if column in frame.columns:
                frame[column] = frame[column].map(lambda path: Path(path).name if path else "")
        keys = ["video_id"] + [c for c in ("clip_index", "track_id") if c in frame.columns]
        tables[name] = frame.sort_values(keys).reset_index(drop=True)
    return tables
