"""One live run per output folder: a lock file that a killed run leaves stale, and a rerun recognises.

OUT/.dpt-batch.lock holds the owner's host, pid and start time. A second run on the same output is
refused while the owner lives; a lock whose owner on this host is gone (kill -9, a crash, a reboot)
is stale and taken over. A lock held on another host cannot be checked from here: it is refused with
the command that clears it once that run is known to be dead.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".dpt-batch.lock"


class RunLockedError(RuntimeError):
    """Another live run owns the output folder."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has the pid (pid reuse aside)."""
    if pid <= 0:
        return False  # os.kill would signal a process group, or every process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def read_lock(folder: str | Path) -> dict | None:
    """The owner ({"host", "pid", "started"}) named by FOLDER's lock file; None without one, {} when
    it cannot be read (a lock being written, or a torn one)."""
    path = Path(folder) / LOCK_FILE
    try:
        holder = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """Context manager holding OUT's run lock; `stale_owner` says whose dead lock was taken over."""

    def __init__(self, output: str | Path) -> None:
        self.path = Path(output) / LOCK_FILE
        self.stale_owner: dict | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        while True:
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(descriptor, "w") as lock:
                json.dump(owner, lock)
            return self

    def _handle_existing(self) -> None:
        holder = read_lock(self.path.parent) or {}
        if holder.get("host") == socket.gethostname() and pid_alive(int(holder.get("pid", -1))):
            raise RunLockedError(
                f"{self.path.parent} is in use by a live run (pid {holder['pid']} on {holder['host']}); "
                "wait for it, or give this run another --output"
            )
        if holder.get("host") not in (None, socket.gethostname()):
            raise RunLockedError(
                f"{self.path.parent} is locked by a run on {holder['host']} (pid {holder.get('pid')}), which "
                f"cannot be checked from here; if that run is dead, remove {self.path} and rerun"
            )
        self.stale_owner = holder  # its owner is gone: a killed or crashed run
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
