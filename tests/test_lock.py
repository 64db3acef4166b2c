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
