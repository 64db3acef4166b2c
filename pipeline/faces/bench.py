"""Face-side benchmark: RetinaFace cost per frame at 720p/1080p, landmark jitter before/after smoothing.

    python -m pipeline.faces.bench --weights ../shared/weights/retinaface_mobile0.25.pth \
        --footage ../shared/footage --out bench-results/faces-cpu.md
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from pipeline import media
from pipeline.faces.align import alignment_affine
from pipeline.faces.detect import FaceDetector
from pipeline.faces.settings import FaceSettings
from pipeline.faces.smooth import template_space_motion
from pipeline.faces.track import track_faces

RESOLUTIONS = {"720p": (720, 1280), "1080p": (1080, 1920)}


@dataclass
class DetectionTiming:
    resolution: str
    max_side: int
    median_ms_per_frame: float
    best_ms_per_frame: float
    faces_found: float


@dataclass
class ClipJitter:
    clip: str
    frames: int
    raw: float
    smoothed: float


def read_frames(path: Path, count: int | None = None) -> np.ndarray:
    """TxHxWx3 uint8 RGB frames of a video (its first `count`)."""
    frame_count = media.probe(path).frame_count
    return media.read_frames(path, 0, frame_count if count is None else min(count, frame_count))


def frames_at_resolution(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Square face frames upscaled to `height` and centred on a black `height` x `width` canvas."""
    canvases = np.zeros((len(frames), height, width, 3), np.uint8)
    left = (width - height) // 2
    for canvas, frame in zip(canvases, frames, strict=True):
        canvas[:, left : left + height] = cv2.resize(frame, (height, height), interpolation=cv2.INTER_CUBIC)
    return canvases


def time_detection(
    detector: FaceDetector, frames: np.ndarray, repeats: int = 3
) -> tuple[float, float, float]:
    """Median and best milliseconds per frame over batches of detector.detect, and faces per frame.

    Each batch is timed on its own, so a burst of other work on a shared machine spoils one
    sample rather than the whole measurement.
    """
    size = detector.batch_size
    batches = [frames[start : start + size] for start in range(0, len(frames), size)]
    detector.detect(batches[0])
    per_frame_ms, faces = [], []
    for _ in range(repeats):
        for batch in batches:
            start = time.perf_counter()
            detections = detector.detect(batch)
            per_frame_ms.append(1000 * (time.perf_counter() - start) / len(batch))
            faces.extend(len(found) for found in detections)
    return float(np.median(per_frame_ms)), float(np.min(per_frame_ms)), float(np.mean(faces))


def detection_timings(weights: Path, footage: Path, frame_count: int) -> list[DetectionTiming]:
    frames = read_frames(sorted(footage.glob("*.mp4"))[0], frame_count)
    timings = []
    for resolution, (height, width) in RESOLUTIONS.items():
        canvases = frames_at_resolution(frames, height, width)
        for max_side in (640, 0):
            detector = FaceDetector("retinaface_mobile0.25", weights, max_side=max_side)
            timings.append(DetectionTiming(resolution, max_side, *time_detection(detector, canvases)))
    return timings


def clip_jitters(weights: Path, footage: Path) -> list[ClipJitter]:
    """Template-space landmark motion of each clip's longest restorable track, raw and smoothed."""
    settings = FaceSettings(detector="retinaface_mobile0.25", detector_weights=str(weights))
    detector = FaceDetector.from_settings(settings)
    jitters = []
    for path in sorted(footage.glob("*.mp4")):
        tracks = [t for t in track_faces(read_frames(path), detector, settings) if t.restore]
        if not tracks:
            continue
        track = max(tracks, key=len)
        jitters.append(
            ClipJitter(path.stem, len(track), _motion(track.landmarks), _motion(track.smoothed_landmarks))
        )
    return jitters


def _motion(landmarks: np.ndarray) -> float:
    return template_space_motion(landmarks, np.stack([alignment_affine(points) for points in landmarks]))


def markdown_report(
    timings: list[DetectionTiming], jitters: list[ClipJitter], command: str, load_before: float
) -> str:
    settings = FaceSettings()
    lines = [
        "# Face side benchmarks",
        "",
        f"Machine: 2-core CPU, no GPU (torch {torch.__version__}, {torch.get_num_threads()} threads). "
        "Date: 2026-11-26.",
        f"Command: `{command}`",
        f"1-minute load average before / after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        "(above 2 means other work shared the two cores and the times are pessimistic).",
        "",
        "## RetinaFace mobile0.25 detection cost",
        "",
        "Footage frames upscaled to the frame height and centred on a black canvas; batches of 8, each",
        "timed on its own, three passes; ms / frame is the median batch (best batch in brackets),",
        "resize to detect_max_side included. 640 is the default; 0 detects at the source size.",
        "",
        "| resolution | detect_max_side | ms / frame | faces / frame |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t.resolution} | {t.max_side} | {t.median_ms_per_frame:.1f} ({t.best_ms_per_frame:.1f}) "
        f"| {t.faces_found:.2f} |"
        for t in timings
    ]
    lines += [
        "",
        "## Landmark jitter before and after smoothing",
        "",
        "Mean frame-to-frame landmark motion in 512x512 template pixels (both frames of a pair mapped by",
        f"the earlier frame's alignment affine), longest track per clip, default smoothing "
        f"({settings.smoothing}, window {settings.smoothing_window}).",
        "",
        "| clip | frames | raw | smoothed | change |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {j.clip} | {j.frames} | {_change(j.raw, j.smoothed)} |" for j in jitters]
    raw_mean = float(np.mean([j.raw for j in jitters]))
    smoothed_mean = float(np.mean([j.smoothed for j in jitters]))
    lines += [f"| **mean** | | {_change(raw_mean, smoothed_mean)} |"]
    return "\n".join(lines) + "\n"


def _change(before: float, after: float) -> str:
    return f"{before:.2f} | {after:.2f} | {100 * (after / before - 1):+.0f}%"


@click.command()
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="RetinaFace mobile0.25 state dict.")
@click.option("--footage", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of face clips (*.mp4).")
@click.option("--frames", "frame_count", default=32, show_default=True, help="Frames timed per resolution.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown file to write; the report is printed either way.")
def main(weights: Path, footage: Path, frame_count: int, out: Path | None) -> None:
    """Time face detection at 720p/1080p and measure landmark jitter with and without smoothing."""
    command = f"python -m pipeline.faces.bench --weights {weights} --footage {footage} --frames {frame_count}"
    load_before = os.getloadavg()[0]
    timings = detection_timings(weights, footage, frame_count)
    report = markdown_report(timings, clip_jitters(weights, footage), command, load_before)
    click.echo(report)
    if out is not None:
        out.write_text(report)


if __name__ == "__main__":
    main()
