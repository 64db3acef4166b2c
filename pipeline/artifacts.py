"""What a clip leaves between two stages, and where: nothing that another node has to see on a disk.

    face crops       aligned crops of the tracks to restore (faces stage -> restore stage)
    restored crops   the restored crops (restore stage -> paste-and-encode stage)
    source copy      a node's own copy of a video behind a URL, in its scratch folder
    segment          the clip's encoded .mp4: published to the output's storage when the clip is
                     recorded (OUT/state/segments/VIDEO_ID/CLIP_KEY.mp4), so that any node can
                     assemble the film

Crops travel in the clip's record through Ray's object store (`pack_faces` / `unpack_faces`: one clip
at a time, spilled to disk by Ray under memory pressure); frames are never moved between nodes but
decoded again from the node's own copy of the source, which costs far less than moving them (a 1080p
frame is 6 MB decoded, tens of kB compressed; BENCHMARKS.md, "Moving a clip between nodes").

Each node's scratch folder is the run's work root on that node's own disk: a video's sub-folder holds
its source copy, attempt counters and a segment being encoded. Source copies are evicted, least
recently used first, beyond SCRATCH_SOURCES_BYTES per node.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pipeline.faces.align import AlignedFaces
from pipeline.packing import pack_arrays, unpack_arrays
from pipeline.records import ClipTask

SEGMENT = ".mp4"
SOURCE_DIR = "source"
_PARTS = ("crops", "affines", "frames")
# Source copies kept on one node's scratch disk before the least recently used are removed:
# DPT_SCRATCH_SOURCES_GB overrides it (a node's other scratch files are small).
SCRATCH_SOURCES_BYTES = int(float(os.environ.get("DPT_SCRATCH_SOURCES_GB", "50")) * 1024**3)


def clip_artifact(task: ClipTask, suffix: str) -> Path:
    """The clip's file `suffix` (SEGMENT) in its video's scratch folder on this node."""
    name = f"clip_{task.clip_key}" if task.clip_key else f"clip_{task.clip_index:05d}"
    return Path(task.work_dir) / f"{name}{suffix}"


def pack_faces(faces: Mapping[int, AlignedFaces]) -> bytes:
    """The faces of a clip's tracks (track id -> crops, affines, frames) as packed arrays
    (pipeline.packing: one copy of each, none to unpack).

    Per track id N it holds `crops_N` (TxSxSx3 uint8 RGB), `affines_N` (Tx2x3 frame -> crop) and
    `frames_N` (T clip-relative frame indices). No faces: b"" (nothing to restore)."""
    return pack_arrays({f"{part}_{track_id}": getattr(aligned, part) for track_id, aligned in faces.items()
                        for part in _PARTS})  # fmt: skip


def unpack_faces(data: bytes) -> dict[int, AlignedFaces]:
    """track id -> AlignedFaces, as `pack_faces` packed them, in track order; their arrays are read-only
    views of `data`.

    Raises:
        ValueError: `data` is not what pack_faces makes.
    """
    if not data:
        return {}
    try:
        stored = unpack_arrays(data)
        ids = sorted(int(name.removeprefix("crops_")) for name in stored if name.startswith("crops_"))
        return {i: AlignedFaces(*(stored[f"{part}_{i}"] for part in _PARTS)) for i in ids}
    except (KeyError, ValueError) as error:
        raise ValueError(f"the clip's face crops do not unpack ({len(data)} bytes): {error}") from None


def local_source(uri: str, fingerprint: str, work_dir: str | Path) -> Path:
    """This node's file for a video's source: a local path as it is; a URL copied once into the video's
    scratch folder on this node (in a sub-folder named by the source's fingerprint, so that a copy of
    an older version of the object is never taken for it), evicting other videos' copies beyond
    SCRATCH_SOURCES_BYTES first. Each use marks the copy as recently used."""
    from pipeline.storage import is_url, local_copy

    if not is_url(uri):
        return local_copy(uri, work_dir)
    version = hashlib.sha256(fingerprint.encode()).hexdigest()[:12] if fingerprint else "unversioned"
    folder = Path(work_dir) / SOURCE_DIR / version
    copy = folder / uri.rstrip("/").rsplit("/", 1)[-1]
    if copy.is_file():
        os.utime(copy)
        return copy
    evict_sources(Path(work_dir).parent, keep=Path(work_dir).name)
    return local_copy(uri, folder)


def evict_sources(work_root: Path, keep: str, budget: int | None = None) -> list[Path]:
    """Remove the least recently used source copies of other videos under `work_root` (this node's
    scratch) until those left hold at most `budget` bytes; returns the copies removed."""
    budget = SCRATCH_SOURCES_BYTES if budget is None else budget
    copies = []
    for copy in work_root.glob(f"*/{SOURCE_DIR}/*/*"):
        try:
            stat = copy.stat()
        except OSError:
            continue  # removed meanwhile by another actor of this node
        if copy.is_file() and not copy.name.startswith("."):
            copies.append((stat.st_mtime, stat.st_size, copy))
    total = sum(size for _, size, _ in copies)
    removed = []
    for _, size, copy in sorted(copies):
        if total <= budget:
            break
        if copy.parents[2].name == keep:
            continue
        shutil.rmtree(copy.parent, ignore_errors=True)  # a reader holding it open keeps its bytes
        total -= size
        removed.append(copy)
    return removed

