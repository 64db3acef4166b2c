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


def refuse_unless_stale(holder: dict, name: str, clearing: str) -> None:
    """Raise RunLockedError unless the lock's `holder` is a dead run of this host (a stale lock).

    A live owner on this host is refused; an owner on another host cannot be checked from here and is
    refused with `clearing`, what to do once that run is known to be dead. `name` names the output."""
    host, pid = holder.get("host"), int(holder.get("pid", -1))
    if host == socket.gethostname() and pid_alive(pid):
        raise RunLockedError(
            f"{name} is in use by a live run (pid {pid} on {host}); wait for it, or give this run "
            "another --output"
        )
    if host not in (None, socket.gethostname()):
        raise RunLockedError(
            f"{name} is locked by a run on {host} (pid {pid}), which cannot be checked from here; "
            f"if that run is dead, {clearing} and rerun"
        )


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
        refuse_unless_stale(holder, str(self.path.parent), f"remove {self.path}")
        self.stale_owner = holder  # its owner is gone: a killed or crashed run
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


class RemoteRunLock:
    """The run lock of an output behind a URL (s3://...): OUT/.dpt-batch.lock written through fsspec.

    Object stores have no exclusive create here, so this lock is best effort: it refuses a run while
    another live run's lock is in place (checked as `RunLock` does: a dead owner on this host is taken
    over, an owner on another host refused with the command that clears it), but two runs that start
    within the same moment may both go on. `run_manifest` holds it together with the exclusive local
    lock of the work folder.
    """

    def __init__(self, output: str) -> None:
        from pipeline.storage import join

        self.location = join(output, LOCK_FILE)
        self.stale_owner: dict | None = None

    def __enter__(self) -> RemoteRunLock:
        from pipeline.storage import filesystem, write_atomically

        fs, path = filesystem(self.location)
        if fs.isfile(path):
            try:
                holder = json.loads(fs.cat_file(path) or b"{}")
            except (OSError, ValueError):
                holder = {}
            clearing = (f"remove the lock (e.g. `python -c \"import fsspec; "
                        f"fsspec.open('{self.location}').fs.rm('{path}')\"`)")  # fmt: skip
            refuse_unless_stale(holder, self.location, clearing)
            self.stale_owner = holder
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        write_atomically(self.location, lambda sink: sink.write(json.dumps(owner).encode()))
        return self

    def __exit__(self, *exc) -> None:
        from pipeline.storage import filesystem

        fs, path = filesystem(self.location)
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass
