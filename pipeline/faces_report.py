"""Faces of one video, for inspection: scene clips -> face tracks -> tracks.parquet and preview.mp4.

This is what `dpt-batch faces VIDEO -o DIR` runs. It takes the same steps as the archive job, through
the same `Restorer` (probe, scene clips, detection and tracking) on a single machine, so a user can
check detection and tracking settings on a sample before restoring a whole archive.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.catalog import CLIP_INDEX, FRAME, SCENE, SCORE, TRACK_ID
from pipeline.config import Settings
from pipeline.media import VideoInfo, VideoWriter, read_frames
from pipeline.restorer import Restorer
from pipeline.scenes import Clip

TRACKS_FILE = "tracks.parquet"
PREVIEW_FILE = "preview.mp4"
PREVIEW_MAX_SIDE = 720

TRACK_SCHEMA = pa.schema(
    [
        pa.field("clip", CLIP_INDEX, nullable=False),
        pa.field("scene", SCENE, nullable=False),
        pa.field("track_id", TRACK_ID, nullable=False),
        pa.field("frame", FRAME, nullable=False),
        pa.field("box", pa.list_(pa.float32(), 4), nullable=False),
        pa.field("score", SCORE),
        pa.field("detected", pa.bool_(), nullable=False),
        pa.field("landmarks", pa.list_(pa.float32(), 10), nullable=False),
        pa.field("smoothed_landmarks", pa.list_(pa.float32(), 10), nullable=False),
        pa.field("restore", pa.bool_(), nullable=False),
        pa.field("skip_reason", pa.string(), nullable=False),
    ],
    metadata={
        b"frame": b"video frame index (from 0)",
        b"box": b"x0, y0, x1, y1 in source pixels",
        b"score": b"detector score; NaN on frames where the face was interpolated",
        b"landmarks": b"5 points (eye, eye, nose, mouth, mouth) as x0, y0, ..., x4, y4",
    },
)

Progress = Callable[[str, int], None]
"""progress(stage, frames): `frames` more frames are done in stage "scenes" or "faces"."""


@dataclass(frozen=True)
class FacesReport:
    """What `write_faces_report` found and wrote.

    Attributes:
        video: the source's probe.
        clips: its scene clips.
        tracks_path: DIR/tracks.parquet, one row per track and frame (schema TRACK_SCHEMA).
        preview_path: DIR/preview.mp4 with boxes, ids and landmarks drawn; None if not asked for.
        tracks: number of tracks found (all clips).
        restorable_tracks: tracks that would be restored (restore == True).
    """

    video: VideoInfo
    clips: list[Clip]
    tracks_path: Path
    preview_path: Path | None
    tracks: int
    restorable_tracks: int


def write_faces_report(
    video: str | Path,
    out_dir: str | Path,
    settings: Settings | None = None,
    preview: bool = True,
    device: str | None = None,
    info: VideoInfo | None = None,
    progress: Progress | None = None,
) -> FacesReport:
    """Split a video into scene clips, detect and track faces clip by clip (pipeline.restorer, as a run
    does), and write Parquet and a preview.

    Args:
        video: the video file.
        out_dir: folder for tracks.parquet and preview.mp4 (created).
        settings: scenes and faces settings (and the device choice of settings.model.device).
        preview: also write preview.mp4 (at most PREVIEW_MAX_SIDE pixels on its longest side).
        device: torch device for the detector; None: from settings.model.device.
        info: the video's probe, when the caller already has it.
        progress: told how many frames each stage has done.
    """
    settings = settings or Settings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    restorer = Restorer(settings, faces_device=device)
    info, clips = restorer.scan(video, _stage(progress, "scenes"), info=info)

    tracks_path = out_dir / TRACKS_FILE
    preview_path = out_dir / PREVIEW_FILE if preview else None
    writer = _preview_writer(preview_path, info, settings) if preview_path else None
    rows: list[dict] = []
    track_count = restorable = 0
    try:
        for clip in clips:
            frames = read_frames(video, clip.start, clip.end)
            tracks = restorer.find_faces(frames, clip.start, str(clip.index), align=False).tracks
            track_count += len(tracks)
            restorable += sum(track.restore for track in tracks)
            rows.extend(track_rows(tracks, clip))
            if writer is not None:
                writer.write(draw_tracks(frames, tracks, clip, (writer.width, writer.height)))
            if progress is not None:
                progress("faces", clip.frame_count)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    pq.write_table(pa.Table.from_pylist(rows, schema=TRACK_SCHEMA), tracks_path)
    return FacesReport(info, clips, tracks_path, preview_path, track_count, restorable)


def track_rows(tracks: Sequence, clip: Clip) -> list[dict]:
    """Parquet rows of a clip's tracks, with video frame indices (clip.start + clip-relative frame)."""
    rows = []
    for track in tracks:
        for row in track.rows():
            row.update(clip=clip.index, scene=clip.scene, frame=clip.start + row["frame"])
            rows.append(row)
    return rows


def draw_tracks(frames: np.ndarray, tracks: Sequence, clip: Clip, size: tuple[int, int]) -> np.ndarray:
    """Preview frames: TxHxWx3 RGB resized to `size` (width, height), with each track's box, its
    "clip:track" id and smoothed landmarks; tracks not to restore are grey with their skip reason."""
    width, height = size
    scale = np.array([width / frames.shape[2], height / frames.shape[1]])
    out = np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])
    thickness = max(2, round(2 * max(width, height) / 720))
    for t in range(len(out)):
        canvas = out[t]
        cv2.putText(canvas, f"clip {clip.index} scene {clip.scene} frame {clip.start + t}", (6, 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    for track in tracks:
        color = _track_color(track.track_id) if track.restore else (150, 150, 150)
        label = f"{clip.index}:{track.track_id}" + ("" if track.restore else f" {track.skip_reason}")
        for i, frame in enumerate(track.frames):
            canvas = out[int(frame)]
            x0, y0, x1, y1 = (np.asarray(track.boxes[i]) * np.tile(scale, 2)).round().astype(int)
            style = thickness if track.detected[i] else max(1, thickness // 2)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), color, style)
            cv2.putText(canvas, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1,
                        cv2.LINE_AA)
            for x, y in np.asarray(track.smoothed_landmarks[i]) * scale:
                cv2.circle(canvas, (int(round(x)), int(round(y))), thickness, color, -1)
    return out


def preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the preview: the source shrunk to max_side, both even (for yuv420p)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _preview_writer(path: Path, info: VideoInfo, settings: Settings) -> VideoWriter:
    width, height = preview_size(info.width, info.height)
    return VideoWriter(path, width, height, Fraction(info.frame_rate), settings.encode)


def _track_color(track_id: int) -> tuple[int, int, int]:
    hue = (track_id * 47) % 180
    rgb = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return tuple(int(c) for c in rgb)


def _stage(progress: Progress | None, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda frames: progress(stage, frames)
