"""Cut a video into scene clips: shot boundaries from PySceneDetect, long shots split to a maximum length.

The clips of a video are contiguous half-open frame ranges [start, end) that cover [0, frame_count)
exactly: every frame belongs to exactly one clip. Faces are tracked and restored clip by clip, so a
clip never spans a hard cut.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, SceneDetector

from pipeline.config import ScenesSettings
from pipeline.media import VideoInfo, iter_frames, probe

DECODE_BATCH = 64


@dataclass(frozen=True)
class Clip:
    """A run of frames inside one shot.

    Attributes:
        index: position of the clip in the video, from 0.
        start: first frame of the clip.
        end: one past its last frame (half-open: frames start..end-1).
        scene: index of the shot the clip comes from; consecutive clips of a long shot that was
            split share it (the boundary between them is not a cut).
    """

    index: int
    start: int
    end: int
    scene: int

    @property
    def frame_count(self) -> int:
        return self.end - self.start


def split_scenes(
    path: str | Path,
    settings: ScenesSettings | None = None,
    info: VideoInfo | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Clip]:
    """Scene clips of a video: detect the cuts, then split shots longer than settings.max_clip_frames.

    Args:
        info: the video's probe, when the caller already has it.
        progress: called with the number of frames just analysed, batch by batch.
    """
    settings = settings or ScenesSettings()
    info = info or probe(path)
    cuts = detect_cuts(path, settings, info, progress)
    return clips_from_cuts(cuts, info.frame_count, settings.max_clip_frames)


def detect_cuts(
    path: str | Path,
    settings: ScenesSettings,
    info: VideoInfo,
    progress: Callable[[int], None] | None = None,
) -> list[int]:
    """Frames where a new shot starts (sorted, each in 1..frame_count-1), found on decoded frames.

    Frames are decoded at settings.analysis_width (aspect kept) straight to BGR and fed in order to a
    PySceneDetect detector.
    """
    detector = make_detector(settings)
    width, height = analysis_size(info.width, info.height, settings.analysis_width)
    cuts: list[int] = []
    timecode = None
    for first, frames in iter_frames(path, 0, info.frame_count, DECODE_BATCH, width, height, bgr=True):
        for offset, frame in enumerate(frames):
            timecode = FrameTimecode(first + offset, fps=info.frame_rate)
            cuts.extend(cut.frame_num for cut in detector.process_frame(timecode, frame))
        if progress is not None:
            progress(len(frames))
    if timecode is not None:
        cuts.extend(cut.frame_num for cut in detector.post_process(timecode))
    return sorted({cut for cut in cuts if 0 < cut < info.frame_count})


def make_detector(settings: ScenesSettings) -> SceneDetector:
    """The PySceneDetect detector named by settings.detector, with its threshold and minimum length."""
    if settings.detector == "content":
        threshold = 27.0 if settings.threshold is None else settings.threshold
        return ContentDetector(threshold=threshold, min_scene_len=settings.min_scene_len)
    if settings.detector == "adaptive":
        threshold = 3.0 if settings.threshold is None else settings.threshold
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=settings.min_scene_len)
    raise ValueError(f"scenes.detector={settings.detector!r}: choose content or adaptive")


def analysis_size(width: int, height: int, analysis_width: int) -> tuple[int, int]:
    """(width, height) to decode at for cut detection: analysis_width wide, even, aspect kept;
    (0, 0) keeps the source size (also when the source is already narrower)."""
    if analysis_width <= 0 or width <= analysis_width:
        return 0, 0
    scaled_height = max(2, round(height * analysis_width / width / 2) * 2)
    return analysis_width - analysis_width % 2, scaled_height


def clips_from_cuts(cuts: Iterable[int], frame_count: int, max_clip_frames: int) -> list[Clip]:
    """Contiguous clips covering [0, frame_count): one per shot, long shots split in near-equal parts.

    Cuts outside 1..frame_count-1 are ignored. A shot of L frames becomes ceil(L / max_clip_frames)
    clips whose lengths differ by at most one frame.
    """
    if max_clip_frames < 1:
        raise ValueError(f"scenes.max_clip_frames={max_clip_frames}: set it >= 1")
    if frame_count <= 0:
        return []
    bounds = [0, *sorted({cut for cut in cuts if 0 < cut < frame_count}), frame_count]
    clips: list[Clip] = []
    for scene, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        for piece_start, piece_end in _split_evenly(start, end, max_clip_frames):
            clips.append(Clip(index=len(clips), start=piece_start, end=piece_end, scene=scene))
    return clips


def _split_evenly(start: int, end: int, max_length: int) -> Sequence[tuple[int, int]]:
    pieces = math.ceil((end - start) / max_length)
    base, extra = divmod(end - start, pieces)
    edges = [start]
    for i in range(pieces):
        edges.append(edges[-1] + base + (1 if i < extra else 0))
    return list(zip(edges, edges[1:], strict=False))
