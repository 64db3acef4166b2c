"""The files a clip leaves in its video's work folder between two stages, and their one format.

    clip_KEY.faces.npz      aligned face crops of the tracks to restore (faces stage -> restore stage)
    clip_KEY.restored.npz   the restored crops (restore stage -> paste-and-encode stage)
    clip_KEY.mp4            the encoded clip (paste-and-encode stage -> assembly)

Both .npz files hold, per track id N, `crops_N` (TxSxSx3 uint8 RGB), `affines_N` (Tx2x3 frame -> crop)
and `frames_N` (T clip-relative frame indices): `save_faces` writes them, `load_faces` reads them.
Files are named by the clip's key, so an artifact made under other settings is never taken for this
clip's, and written under a temporary name, then renamed, so a reader never sees half of one.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.faces.align import AlignedFaces
from pipeline.records import ClipTask

FACES = ".faces.npz"
RESTORED = ".restored.npz"
SEGMENT = ".mp4"
_PARTS = ("crops", "affines", "frames")


def clip_artifact(task: ClipTask, suffix: str) -> Path:
    """The clip's artifact `suffix` (FACES, RESTORED, SEGMENT) in its video's work folder."""
    name = f"clip_{task.clip_key}" if task.clip_key else f"clip_{task.clip_index:05d}"
    return Path(task.work_dir) / f"{name}{suffix}"


def save_faces(path: Path, faces: Mapping[int, AlignedFaces]) -> None:
    """Write the faces of a clip's tracks (track id -> crops, affines, frames) atomically."""
    arrays = {f"{part}_{track_id}": getattr(aligned, part) for track_id, aligned in faces.items()
              for part in _PARTS}  # fmt: skip
    atomic_savez(path, arrays)


def load_faces(path: str | Path) -> dict[int, AlignedFaces]:
    """track id -> AlignedFaces, as `save_faces` wrote them, in track order."""
    with np.load(path) as stored:
        ids = sorted(int(name.removeprefix("crops_")) for name in stored.files if name.startswith("crops_"))
        return {i: AlignedFaces(*(stored[f"{part}_{i}"] for part in _PARTS)) for i in ids}


def atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)
