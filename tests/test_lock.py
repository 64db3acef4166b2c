"""The run lock: one live run per output folder; a killed run's lock is recognised as stale."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from pipeline.lock import LOCK_FILE, RunLock, RunLockedError


def test_a_second_run_on_a_live_output_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by a live run"):
            RunLock(tmp_path).__enter__()
    assert not (tmp_path / LOCK_FILE).exists()  # released on exit


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(command, capture_output=True, text=True)  # its pid is gone once it returns
    holder = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": 0}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))
    with RunLock(tmp_path) as lock:
        assert lock.stale_owner == holder
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] != holder["pid"]


def test_a_lock_from_another_host_names_the_host_and_the_fix(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "render-node-7", "pid": 4242, "started": 0}))
    with pytest.raises(RunLockedError, match="render-node-7.*remove"):
        RunLock(tmp_path).__enter__()


def test_a_url_output_lock_refuses_another_hosts_run_and_takes_over_a_dead_one(moto_s3):
    import os

    import fsspec

    from pipeline.lock import RemoteRunLock

    s3 = fsspec.filesystem("s3")
    with RemoteRunLock("s3://archive/out") as lock:
        holder = json.loads(s3.cat_file(f"archive/out/{LOCK_FILE}"))
        assert holder["pid"] == os.getpid() and lock.stale_owner is None
    assert not s3.exists(f"archive/out/{LOCK_FILE}")  # released

    s3.pipe_file(f"archive/out/{LOCK_FILE}", json.dumps({"host": "render-7", "pid": 12}).encode())
    with pytest.raises(RunLockedError, match="render-7.*remove the lock"):
        RemoteRunLock("s3://archive/out").__enter__()

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"host": socket.gethostname(), "pid": live.pid}
        s3.pipe_file(f"archive/out/{LOCK_FILE}", json.dumps(owner).encode())
        with pytest.raises(RunLockedError, match="live run"):
            RemoteRunLock("s3://archive/out").__enter__()
    finally:
        live.kill()
        live.wait()
    with RemoteRunLock("s3://archive/out") as lock:  # its owner is gone now: a killed run's lock
        assert lock.stale_owner["pid"] == live.pid
