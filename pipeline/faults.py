"""Fault points: named places in a run where tests stop or crash the real process, to prove that a
rerun loses nothing. Inert unless the environment asks for them (Ray workers inherit the driver's).

    DPT_FAULT_DIR=FOLDER     where the markers below are written (required by the other two)
    DPT_PAUSE_AT=POINT       the first process that reaches POINT writes FOLDER/paused-POINT and sleeps
                             until killed (tests then kill -9 the run's process group); several
                             points (comma-separated): the first process that reaches any of them
    DPT_CRASH_AT=POINT       the first process that reaches POINT dies at once (os._exit), as a worker
                             killed by the kernel would; later passages go on (a transient fault)
    DPT_CRASH_AT=POINT@VIDEO every process that reaches POINT with a clip of VIDEO dies (a poison item)
                             (several specs: comma-separated)

Points: faces (crops found, not yet saved), restore (faces restored, not yet saved), encode (part of a
segment written), assemble (a film joined, not yet published), catalog (between two catalog files).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

FAULT_DIR_ENV = "DPT_FAULT_DIR"
PAUSE_ENV = "DPT_PAUSE_AT"
CRASH_ENV = "DPT_CRASH_AT"
POINTS = ("faces", "restore", "encode", "assemble", "catalog")


def fault_point(point: str, video_id: str = "") -> None:
    """Pause or crash here if the environment names `point`; otherwise return at once."""
    folder = os.environ.get(FAULT_DIR_ENV)
    if not folder:
        return
    pause_at = [name.strip() for name in os.environ.get(PAUSE_ENV, "").split(",")]
    if point in pause_at and _first(Path(folder) / "paused"):
        (Path(folder) / f"paused-{point}").touch()
        while True:
            time.sleep(60)
    for spec in os.environ.get(CRASH_ENV, "").split(","):
        target, _, poisoned = spec.strip().partition("@")
        if target != point:
            continue
        if poisoned == video_id or (not poisoned and _first(Path(folder) / f"crashed-{point}")):
            os._exit(13)


def _first(marker: Path) -> bool:
    """Create `marker`; True only for the one process that created it."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True
