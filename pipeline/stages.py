"""The stages of a restoration run, one class each, in the order a video travels through them.

Each stage names the resources it needs, loads its models once in `setup()`, and maps a list of rows
(plain dicts: ids, frame ranges, paths of artifacts) to a list of rows in `process()`. Stages know
nothing of Ray: `pipeline.run` maps them onto Ray Data actor pools, and tests call them directly.

A row whose `error` is set has failed, and a row marked `resumed` was finished by an earlier run (its
segment and record are in place, see `pipeline.state`); every later stage passes both on untouched, so
that a failure reaches the catalog instead of stopping the run and finished work is never redone.
Frames never travel in rows: aligned crops and restored crops go through `.npz` artifacts in the run's
work folder, and encoded clips through `.mp4` segments.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import EncodeSettings, Settings
from pipeline.faults import fault_point

Row = dict[str, Any]


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message`, for catalogs and tables."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def failed(row: Row, stage: str, error: BaseException) -> Row:
    """The row, marked failed by `stage` with a one-line cause."""
    return {**row, "error": f"{stage}: {describe_error(error)}"}


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed .npz under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)


def clip_work_path(row: Row, suffix: str) -> Path:
    """An artifact of the clip in its video's work folder, named by the clip's key when it has one (so
    artifacts made under other settings are never taken for this clip's)."""
    name = f"clip_{row['clip_key']}" if row.get("clip_key") else f"clip_{row['clip_index']:05d}"
    return Path(row["work_dir"]) / f"{name}{suffix}"


# A clip (or video, for probing) whose worker died this many times in one run fails instead of being
# tried again: Ray restarts dead actors and retries their work without limit, which a file that
# crashes a decoder or the GPU every time would turn into an endless run.
MAX_ATTEMPTS = 3


class WorkerDiedError(RuntimeError):
    """The item killed its worker process MAX_ATTEMPTS times."""


def count_attempt(row: Row, stage: str) -> int:
    """Count one more attempt of `stage` at the row's clip (or video) in this run, and return the
    count; raise WorkerDiedError past MAX_ATTEMPTS. Rows without a `run_id` are not counted (0).

    The count lives in the work folder, so it survives the worker: an attempt that ends normally
    (success or a caught error) still counts, but Ray only retries work whose worker died."""
    if not row.get("run_id"):
        return 0
    item = clip_work_path(row, "").name if row.get("clip_index", -1) >= 0 else "video"
    marker = Path(row["work_dir"]) / f".attempts-{row['run_id']}-{stage}-{item}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    count = int(marker.read_text() or 0) + 1 if marker.is_file() else 1
    marker.write_text(str(count))
    if count > MAX_ATTEMPTS:
        raise WorkerDiedError(f"its worker died {count - 1} times on it (a crash in a decoder or device?)")
    return count


def passes_through(row: Row) -> bool:
    """Failed rows and rows finished by an earlier run go through a stage untouched."""
    return bool(row.get("error")) or bool(row.get("resumed"))


@dataclass(frozen=True)
class Resources:
    """What one actor (or task) of a stage asks the cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0


class Stage:
    """Base of the stages: `setup()` once per actor, then `process(rows)` per batch."""

    name = "stage"
    resources = Resources()

    def setup(self) -> None:
        """Load models; runs once per actor, before the first batch."""

    def process(self, rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            if passes_through(row):
                out.append(row)
                continue
            start = time.perf_counter()
            try:
                count_attempt(row, self.name)
                result = self.process_row(row)
            except Exception as error:  # a bad item is recorded, never fatal to the run
                result = failed(row, self.name, error)
                result["traceback"] = traceback.format_exc(limit=8)
            result[f"seconds_{self.name}"] = result.get(f"seconds_{self.name}", 0.0) + (
                time.perf_counter() - start
            )
            out.append(result)
        return out

    def process_row(self, row: Row) -> Row:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------
# 1. probe and scenes: a video row -> its clip rows


def split_video(video: Row, settings: Settings, work_root: str, output: str = "") -> list[Row]:
    """Probe a video and cut it into scene clips; one row per clip (or one failed row).

    `video` holds `video_id` and `uri` (a local path or an fsspec URL; a remote file is copied once into
    the video's work folder, and later stages read that copy as `source`). Every frame lands in
    exactly one clip. With `settings_key` and `fingerprint` in `video` (see `pipeline.state`), each
    clip gets its key; with `output` too, clips that an earlier run finished under the same key come
    back as their recorded rows, marked `resumed`.
    """
    from pipeline.media import probe
    from pipeline.scenes import split_scenes
    from pipeline.state import RunState, clip_key
    from pipeline.storage import local_copy

    work_dir = Path(work_root) / video["video_id"]
    base = {
        "video_id": video["video_id"],
        "uri": video["uri"],
        "source": video["uri"],
        "clip_index": -1,
        "clip_count": 0,
        "work_dir": str(work_dir),
        "run_id": video.get("run_id", ""),
        "error": "",
    }
    start = time.perf_counter()
    try:
        count_attempt(base, "probe")
        source = str(local_copy(video["uri"], work_dir / "source"))
        base["source"] = source
        info = probe(source)
        if info.frame_count < 1:
            raise ValueError("the video has no frames")
        clips = split_scenes(source, settings.scenes, info=info)
    except Exception as error:
        row = failed(base, "probe", error)
        row["seconds_probe"] = time.perf_counter() - start
        return [row]
    video_fields = {
        "frames_in": info.frame_count,
        "fps_num": info.frame_rate.numerator,
        "fps_den": info.frame_rate.denominator,
        "width": info.width,
        "height": info.height,
        "duration_s": info.duration_s,
        "bit_depth": info.bit_depth,
        "has_audio": info.has_audio,
        "seconds_probe": (time.perf_counter() - start) / len(clips),
    }
    rows = [
        {
            **base,
            **video_fields,
            "clip_index": clip.index,
            "clip_count": len(clips),
            "start": clip.start,
            "end": clip.end,
            "scene": clip.scene,
        }
        for clip in clips
    ]
    if "settings_key" not in video:
        return rows
    for row in rows:
        row["clip_key"] = clip_key(video["settings_key"], video["fingerprint"], row["start"], row["end"])
    finished = RunState(output).finished_clips(video["video_id"]) if output else {}
    # a finished clip comes back as recorded, with this run's copy of the source
    resumed = {"source": source, "resumed": True, "run_id": base["run_id"]}
    return [{**finished[row["clip_key"]], **resumed} if row["clip_key"] in finished else row for row in rows]


# ---------------------------------------------------------------------------------------------------
# 2. faces: detect, track, smooth, align -> aligned crops artifact


class DetectFaces(Stage):
    """Decode a clip, find and track its faces, and save the aligned crops of the tracks to restore."""

    name = "faces"
    resources = Resources(cpus=1)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = None

    def setup(self) -> None:
        from pipeline.faces import FaceDetector

        self.detector = FaceDetector.from_settings(self.settings.faces, device="cpu")

    def process_row(self, row: Row) -> Row:
        from pipeline.faces import align_track, track_faces
        from pipeline.media import read_frames

        if self.detector is None:
            self.setup()
        frames = read_frames(row["source"], row["start"], row["end"])
        tracks = track_faces(frames, self.detector, self.settings.faces, clip=str(row["clip_index"]))
        arrays: dict[str, np.ndarray] = {}
        summaries = []
        for track in tracks:
            summaries.append(
                {
                    "track_id": track.track_id,
                    "first_frame": int(row["start"] + track.frames[0]),
                    "last_frame": int(row["start"] + track.frames[-1]),
                    "frames": len(track),
                    "restored": track.restore,
                    "skip_reason": track.skip_reason,
                    "mean_score": float(np.nanmean(track.scores)) if np.isfinite(track.scores).any() else 0.0,
                }
            )
            if track.restore:
                aligned = align_track(frames, track)
                arrays[f"crops_{track.track_id}"] = aligned.crops
                arrays[f"affines_{track.track_id}"] = aligned.affines
                arrays[f"frames_{track.track_id}"] = aligned.frames
        faces = sum(s["frames"] for s in summaries if s["restored"])
        fault_point("faces", row["video_id"])
        artifact = ""
        if arrays:
            artifact = str(clip_work_path(row, ".faces.npz"))
            atomic_savez(Path(artifact), arrays)
        return {**row, "tracks_json": json.dumps(summaries), "tracks": len(tracks), "faces": faces,
                "faces_artifact": artifact}  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# 3. restoration: DP-TempCoh over the aligned crops of several clips at once


class RestoreFaces(Stage):
    """Restore the aligned face crops of a batch of clips with DP-TempCoh (windows batched across tracks).

    Clips without faces to restore pass through without touching the network.
    """

    name = "restore"

    def __init__(self, settings: Settings, gpus: float = 0.0) -> None:
        self.settings = settings
        self.resources = Resources(cpus=1, gpus=gpus)
        self.engine = None
        self.weights_identity = ""

    def setup(self) -> None:
        from model.engine import RestorationEngine
        from model.registry import build_model
        from model.weights import load_weights_

        model = build_model(self.settings.model.name)
        resolved = load_weights_(model, self.settings.model.weights)
        self.weights_identity = resolved.identity
        device = "cuda" if self.resources.gpus > 0 else self.settings.model.device
        if device == "auto" and self.resources.gpus == 0:
            device = "cpu"
        self.engine = RestorationEngine(
            model, device=device, precision=self.settings.model.precision,
            batch_windows=self.settings.model.batch_windows,
        )  # fmt: skip

    def process(self, rows: list[Row]) -> list[Row]:
        if self.engine is None:
            self.setup()
        todo = [i for i, row in enumerate(rows) if not passes_through(row) and row.get("faces_artifact")]
        out = [{**row, "weights": self.weights_identity} if not row.get("resumed") else row for row in rows]
        if not todo:
            return out
        start = time.perf_counter()
        retried = False
        for i in list(todo):
            saved = clip_work_path(rows[i], ".restored.npz")
            if saved.is_file():  # restored by an attempt whose worker then died
                out[i]["restored_artifact"] = str(saved)
                todo.remove(i)
                continue
            try:
                retried |= count_attempt(rows[i], self.name) > 1
            except WorkerDiedError as error:
                out[i] = failed(out[i], self.name, error)
                todo.remove(i)
        try:
            if retried and len(todo) > 1:
                raise WorkerDiedError("a worker died on this batch: restoring its clips one at a time")
            self._restore_clips(rows, todo, out)
        except Exception as error:
            if len(todo) == 1:
                out[todo[0]] = failed(out[todo[0]], self.name, error)
            else:  # one clip at a time, so that one bad clip fails alone
                for i in todo:
                    if out[i].get("restored_artifact"):
                        continue  # saved before the error
                    try:
                        self._restore_clips(rows, [i], out)
                    except Exception as clip_error:
                        out[i] = failed(out[i], self.name, clip_error)
        elapsed = (time.perf_counter() - start) / max(1, len(todo))
        for i in todo:
            out[i]["seconds_restore"] = elapsed
        return out

    def _restore_clips(self, rows: list[Row], todo: list[int], out: list[Row]) -> None:
        loaded = {i: dict(np.load(rows[i]["faces_artifact"])) for i in todo}
        keys = [(i, key) for i in todo for key in sorted(loaded[i]) if key.startswith("crops_")]
        # aligned crops are RGB like the decoded frames; the network takes and gives BGR
        restored = self.restore_backing_off([loaded[i][key][..., ::-1].copy() for i, key in keys])
        fault_point("restore", rows[todo[0]]["video_id"])
        by_clip: dict[int, dict[str, np.ndarray]] = {i: {} for i in todo}
        for (i, key), faces in zip(keys, restored, strict=True):
            track_id = key.removeprefix("crops_")
            by_clip[i][f"restored_{track_id}"] = faces[..., ::-1]
            by_clip[i][f"affines_{track_id}"] = loaded[i][f"affines_{track_id}"]
            by_clip[i][f"frames_{track_id}"] = loaded[i][f"frames_{track_id}"]
        for i in todo:
            artifact = clip_work_path(rows[i], ".restored.npz")
            atomic_savez(artifact, by_clip[i])
            out[i]["restored_artifact"] = str(artifact)
            Path(rows[i]["faces_artifact"]).unlink(missing_ok=True)  # consumed: disk stays bounded

    def restore_backing_off(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """`engine.restore_many`, halving the engine's windows per pass after each out-of-memory error
        (down to one window; then the error stands). The smaller batch is kept for later batches."""
        import torch

        while True:
            try:
                return self.engine.restore_many(clips)
            except torch.OutOfMemoryError:
                if self.engine.batch_windows == 1:
                    raise
                self.engine.batch_windows = max(1, self.engine.batch_windows // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                print(f"dpt-batch: out of memory; retrying with {self.engine.batch_windows} windows per pass",
                      file=sys.stderr)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# 4. paste-back and encode: one .mp4 segment per clip


def encode_settings_for(row: Row, encode: EncodeSettings) -> EncodeSettings:
    """The documented output rule: 4:2:0/4:2:2 need even sizes, so odd-sized videos are encoded 4:4:4;
    sources of more than 8 bits keep a 10-bit pixel format (frames are processed in 8 bits)."""
    from dataclasses import replace

    pix_fmt = encode.pix_fmt
    if row["width"] % 2 or row["height"] % 2:
        pix_fmt = pix_fmt.replace("yuv420", "yuv444").replace("yuv422", "yuv444")
    if row.get("bit_depth", 8) > 8 and not pix_fmt.endswith("10le"):
        pix_fmt += "10le"
    return replace(encode, pix_fmt=pix_fmt)


def restored_faces_by_frame(artifact: str, parser=None) -> dict[int, list]:
    """The restored crops of a clip's artifact as PastedFaces, keyed by clip-relative frame; with a
    FaceParser, each limited to its parsed face."""
    from pipeline.faces import PastedFace

    restored = np.load(artifact)
    by_frame: dict[int, list[PastedFace]] = {}
    for key in restored.files:
        if not key.startswith("restored_"):
            continue
        track = key.removeprefix("restored_")
        crops, affines, frames = restored[key], restored[f"affines_{track}"], restored[f"frames_{track}"]
        masks = parser.masks(crops) if parser is not None else [None] * len(crops)
        for crop, affine, frame, mask in zip(crops, affines, frames, masks, strict=True):
            by_frame.setdefault(int(frame), []).append(PastedFace(crop, affine, mask))
    return by_frame


class PasteAndEncode(Stage):
    """Paste the restored faces back into the clip's frames and encode the clip as one segment."""

    name = "encode"
    resources = Resources(cpus=1)
    decode_batch = 32

    def __init__(self, settings: Settings, output: str = "") -> None:
        self.settings = settings
        self.output = output  # where finished clips are recorded (pipeline.state); "" records nothing
        self.parser = None

    def setup(self) -> None:
        if self.settings.faces.parsing_weights:
            from pipeline.faces.parse import FaceParser

            self.parser = FaceParser(self.settings.faces.parsing_weights)

    def process_row(self, row: Row) -> Row:
        from pipeline.faces import paste_faces
        from pipeline.media import VideoWriter, iter_frames
        from pipeline.storage import fsync_file

        artifact = row.get("restored_artifact")
        faces_by_frame = restored_faces_by_frame(artifact, self.parser) if artifact else {}
        segment = clip_work_path(row, ".mp4")
        partial = segment.with_name(f".{segment.name}.partial.mp4")
        rate = Fraction(row["fps_num"], row["fps_den"])
        encode = encode_settings_for(row, self.settings.encode)
        with VideoWriter(partial, row["width"], row["height"], rate, encode) as writer:
            decoded = iter_frames(row["source"], row["start"], row["end"], batch=self.decode_batch)
            for first, frames in decoded:
                for offset in range(len(frames)):
                    faces = faces_by_frame.get(first - row["start"] + offset)
                    if faces:
                        frames[offset] = paste_faces(frames[offset], faces)
                writer.write(frames)
                fault_point("encode", row["video_id"])
        if writer.frames_written != row["end"] - row["start"]:
            raise RuntimeError(
                f"{row['source']}: decoded {writer.frames_written} frames of the clip's "
                f"{row['end'] - row['start']} ({row['start']}..{row['end']}); is the file truncated?"
            )
        fsync_file(partial)  # the segment's bytes are on disk before its name and record say it is done
        os.replace(partial, segment)
        if artifact:
            Path(artifact).unlink(missing_ok=True)  # consumed: only the encoded segment stays
        done = {**row, "segment": str(segment), "frames_out": writer.frames_written,
                "faces_artifact": "", "restored_artifact": ""}  # fmt: skip
        if self.output and row.get("clip_key"):
            from pipeline.state import RunState

            RunState(self.output).record_clip(done)
        return done
