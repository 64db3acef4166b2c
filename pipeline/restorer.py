"""The in-process way to restore faces: a clip of frames or a video file, no Ray.

`Restorer` composes the pieces of a video's journey (probe and scene clips, detection and tracking,
alignment, DP-TempCoh, paste-back) the way SAM's predictor sits beside its model. The stages of
`dpt-batch run`, the `--dry-run` planner and `dpt-batch faces` are built on it:

    restorer = Restorer(load_settings("configs/smoke.yaml"))
    restored = restorer.restore_frames(frames)          # TxHxWx3 uint8 RGB -> same shape
    report = restorer.restore_video("in.mp4", "out.mp4")

Models load on first use, so a Restorer that only finds faces never loads the network.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.config import ConfigError, EncodeSettings, Settings
from pipeline.faces.align import FACE_SIZE, AlignedFaces
from pipeline.faces.paste import PastedFace
from pipeline.media import Colour, I420Converter, VideoInfo, probe, read_frames
from pipeline.scenes import Clip, split_scenes

K = TypeVar("K")


@dataclass(frozen=True)
class ClipFaces:
    """The faces of one clip.

    Attributes:
        tracks: every face track (pipeline.faces.Track), restored or not; none in aligned mode.
        summaries: one catalog row per track (track_id, first_frame, last_frame, frames, restored,
            skip_reason, mean_score), frames counted from the video's first frame.
        aligned: track id -> the aligned crops to restore (restorable tracks only).
    """

    tracks: list
    summaries: list[dict]
    aligned: dict[int, AlignedFaces]

    @property
    def face_frames(self) -> int:
        return sum(summary["frames"] for summary in self.summaries if summary["restored"])


@dataclass(frozen=True)
class VideoReport:
    """What `Restorer.restore_video` did: the source's probe, its clips, and the faces restored."""

    info: VideoInfo
    clips: list[Clip]
    output: Path
    frames_out: int
    tracks: int
    face_frames: int


class Restorer:
    """Restore the faces of frames or videos with DP-TempCoh in this process.

    Frames are uint8 RGB `T x H x W x 3`, as decoded (the network's BGR is handled inside).

    Args:
        settings: the run's settings (faces.mode, detector, network, encoder ...).
        weights: the network's weights as resolved already (a run's context); None resolves
            settings.model.weights on first use.
        device: where DP-TempCoh runs; None: settings.model.device, with "auto" the GPU when present.
        precision: its precision; None: settings.model.precision ("auto": fp32 on CPU, bf16 on GPU).
        faces_device: where detection and face parsing run; None: where DP-TempCoh runs.
        detectors: detector actors on the GPUs (pipeline.faces.remote.Detectors) that detect instead.

    Raises:
        pipeline.config.ConfigError: model.device is cuda and no GPU is visible.
    """

    image_format = "RGB"

    def __init__(self, settings: Settings | None = None, *, weights=None, device: str | None = None,
                 precision: str | None = None, faces_device: str | None = None,
                 detectors=None) -> None:  # fmt: skip
        from model.devices import device_for, effective_precision

        self.settings = settings or Settings()
        self.weights = weights
        try:
            self.device = device or device_for(self.settings.model.device)
            kind = self.device.split(":")[0]
            self.precision = effective_precision(precision or self.settings.model.precision, kind)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.faces_device = faces_device or self.device
        self.detectors = detectors
        self.aligned_mode = self.settings.faces.mode == "aligned"
        self._detector = self._engine = self._parser = None

    @classmethod
    def for_run(cls, context) -> Restorer:
        """The Restorer of a run's actors: the devices, precision and weights its context decided."""
        return cls(context.settings, weights=context.weights, device=context.restore_device,
                   precision=context.restore_precision, faces_device=context.faces_device,
                   detectors=context.detectors)  # fmt: skip

    # -- the models, loaded on first use ---------------------------------------------------------

    @property
    def detector(self):
        if self._detector is None and self.detectors is not None:
            from pipeline.faces.remote import RemoteDetector
            from pipeline.stages import current_node_id

            self._detector = RemoteDetector(self.detectors.services, self.settings.faces.detect_max_side,
                                            current_node_id())  # fmt: skip
        if self._detector is None:
            from pipeline.faces import FaceDetector

            self._detector = FaceDetector.from_settings(self.settings.faces, device=self.faces_device)
        return self._detector

    @property
    def engine(self):
        if self._engine is None:
            from model.engine import RestorationEngine
            from model.registry import build_model
            from model.weights import load_resolved_, on_this_node, resolve_weights

            model = build_model(self.settings.model.name)
            if self.weights is None:
                weights = resolve_weights(self.settings.model.weights)
            else:
                weights = on_this_node(self.weights)
            self.weights = load_resolved_(model, weights)
            self._engine = RestorationEngine(model, device=self.device, precision=self.precision,
                                             batch_windows=self.settings.model.batch_windows)  # fmt: skip
        return self._engine

    @property
    def parser(self):
        if self._parser is None and self.settings.faces.parsing_weights and not self.aligned_mode:
            from pipeline.faces.parse import FaceParser

            self._parser = FaceParser(self.settings.faces.parsing_weights, device=self.faces_device)
        return self._parser

    # -- a video's journey, step by step -------------------------------------------------------

    def scan(self, source: str | Path, progress: Callable[[int], None] | None = None,
             info: VideoInfo | None = None) -> tuple[VideoInfo, list[Clip]]:  # fmt: skip
        """Probe a video (unless `info` is its probe) and cut it into scene clips that cover every frame;
        `progress` is told how many frames the cut detection has read.

        Raises:
            pipeline.media.MediaError: the file is not a readable video (the message says why).
            ValueError: it has no frames, or its frames are not square in aligned mode.
        """
        info = info or probe(source)
        if info.frame_count < 1:
            raise ValueError("the video has no frames")
        if self.aligned_mode and info.width != info.height:
            raise ValueError(
                f"{source} is {info.width}x{info.height}: faces.mode=aligned expects square frames that are "
                f"aligned face crops (512x512, as upstream's VFHQ-style clips); use faces.mode=detect for "
                f"other footage"
            )
        return info, split_scenes(source, self.settings.scenes, info=info, progress=progress)

    def find_faces(
        self, frames: np.ndarray, start: int = 0, clip: str = "0", align: bool = True,
        shrunk: np.ndarray | None = None, scale: float = 1.0, colour: Colour | None = None,
    ) -> ClipFaces:  # fmt: skip
        """Detect, track and smooth the faces of a clip's frames (frame `start` of its video first), and
        align the tracks to restore (unless `align` is False). The detector reads `shrunk` (the frames
        shrunk by `scale`) when given. With `colour`, `frames` are the clip's decoded I420 pictures
        (pipeline.media.read_pictures_with_preview; `shrunk` is then needed) and crops are cut from
        their planes. In aligned mode each frame is the face: one track covering the clip, resized to
        512."""
        if self.aligned_mode:
            return _whole_frames(frames, start)
        from pipeline.faces import align_track, track_faces

        tracks = track_faces(frames, self.detector, self.settings.faces, clip, shrunk=shrunk, scale=scale)
        summaries = [_summary(track, start) for track in tracks]
        aligned = {track.track_id: align_track(frames, track, colour=colour)
                   for track in tracks if track.restore and align}  # fmt: skip
        return ClipFaces(tracks, summaries, aligned)

    def restore_faces(self, faces: Mapping[K, AlignedFaces]) -> dict[K, AlignedFaces]:
        """The crops restored by DP-TempCoh under the same keys (affines and frames kept); windows are
        batched across all the tracks given."""
        # aligned crops are RGB like the decoded frames; the network takes and gives BGR
        restored = self.restore_backing_off([face.crops[..., ::-1].copy() for face in faces.values()])
        return {key: replace(face, crops=np.ascontiguousarray(out[..., ::-1]))
                for (key, face), out in zip(faces.items(), restored, strict=True)}  # fmt: skip

    def restore_backing_off(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """`engine.restore_many`, halving the engine's windows per pass after each out-of-memory error
        (down to one window; then the error stands). The smaller batch is kept for later calls."""
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

    def faces_by_frame(self, restored: Mapping[int, AlignedFaces]) -> dict[int, list[PastedFace]]:
        """A clip's restored crops as PastedFaces keyed by clip-relative frame (limited to the parsed
        face when faces.parsing_weights is set)."""
        by_frame: dict[int, list[PastedFace]] = {}
        for face in restored.values():
            masks = self.parser.masks(face.crops) if self.parser is not None else [None] * len(face.crops)
            for crop, affine, frame, mask in zip(face.crops, face.affines, face.frames, masks, strict=True):
                by_frame.setdefault(int(frame), []).append(PastedFace(crop, affine, mask))
        return by_frame

    def paste(
        self, frame: np.ndarray, faces: list[PastedFace], decoded: I420Converter | None = None
    ) -> np.ndarray:
        """A frame with its restored faces pasted in (aligned mode: the restored face, resized back).

        With `decoded` (the I420Converter that decoded it), `frame` is an I420 picture and the faces are
        converted to its colour and blended into it (not in aligned mode)."""
        if self.aligned_mode:
            if decoded is not None:
                raise ValueError("faces.mode=aligned pastes whole RGB frames: decode them to RGB, "
                                 "without an I420Converter")  # fmt: skip
            from pipeline.faces import faces_to_frames

            return faces_to_frames(faces[-1].crop[None], *frame.shape[:2])[0]
        from pipeline.faces import paste_faces, paste_faces_i420

        if decoded is None:
            return paste_faces(frame, faces)
        return paste_faces_i420(frame, faces, decoded.colour)

    # -- the whole journey -----------------------------------------------------------------------

    def restore_frames(self, frames: np.ndarray) -> np.ndarray:
        """One clip of frames (one shot: uint8 RGB T x H x W x 3) with its faces restored."""
        return self.restore_clip(frames)[0]

    def restore_clip(
        self, frames: np.ndarray, start: int = 0, clip: str = "0"
    ) -> tuple[np.ndarray, ClipFaces]:
        """A clip's frames with their faces restored, and the faces found."""
        faces = self.find_faces(frames, start, clip)
        by_frame = self.faces_by_frame(self.restore_faces(faces.aligned)) if faces.aligned else {}
        restored = np.stack([self.paste(frame, by_frame[t]) if t in by_frame else frame
                             for t, frame in enumerate(frames)])  # fmt: skip
        return restored, faces

    def restore_video(self, source: str | Path, output: str | Path,
                      progress: Callable[[Clip], None] | None = None) -> VideoReport:  # fmt: skip
        """Restore a video file clip by clip into `output` (every frame, the source's rate, audio and
        subtitles), as `dpt-batch run` does for one video, in this process."""
        from pipeline.media import VideoWriter, concat_clips

        info, clips = self.scan(source)
        tracks = face_frames = 0
        encode = encode_settings_for(info.width, info.height, info.bit_depth, self.settings.encode)
        with tempfile.TemporaryDirectory(prefix="dpt-restore-") as folder:
            segment = Path(folder) / "video.mp4"
            with VideoWriter(segment, info.width, info.height, info.frame_rate, encode) as writer:
                for clip in clips:
                    frames = read_frames(source, clip.start, clip.end)
                    restored, faces = self.restore_clip(frames, clip.start, str(clip.index))
                    writer.write(restored)
                    tracks += len(faces.summaries)
                    face_frames += faces.face_frames
                    if progress is not None:
                        progress(clip)
            concat_clips([segment], output, streams_from=source)
        return VideoReport(info, clips, Path(output), probe(output).frame_count, tracks, face_frames)


def encode_settings_for(width: int, height: int, bit_depth: int, encode: EncodeSettings) -> EncodeSettings:
    """The documented output rule: 4:2:0/4:2:2 need even sizes, so odd-sized videos are encoded 4:4:4;
    sources of more than 8 bits keep a 10-bit pixel format (frames are processed in 8 bits), except with
    h264_nvenc, which has no 10-bit profile."""
    pix_fmt = encode.pix_fmt
    if width % 2 or height % 2:
        pix_fmt = pix_fmt.replace("yuv420", "yuv444").replace("yuv422", "yuv444")
    if bit_depth > 8 and not pix_fmt.endswith("10le") and encode.codec != "h264_nvenc":
        pix_fmt += "10le"
    return replace(encode, pix_fmt=pix_fmt)


def _summary(track, start: int) -> dict:
    scores = track.scores
    return {
        "track_id": track.track_id,
        "first_frame": int(start + track.frames[0]),
        "last_frame": int(start + track.frames[-1]),
        "frames": len(track),
        "restored": track.restore,
        "skip_reason": track.skip_reason,
        "mean_score": float(np.nanmean(scores)) if np.isfinite(scores).any() else 0.0,
    }


def _whole_frames(frames: np.ndarray, start: int) -> ClipFaces:
    """Aligned mode: the clip's frames are one face track, resized to the network's 512."""
    from pipeline.faces import frames_to_faces

    count, height, width = frames.shape[:3]
    to_face = np.array([[FACE_SIZE / width, 0.0, 0.0], [0.0, FACE_SIZE / height, 0.0]])
    aligned = AlignedFaces(frames_to_faces(frames), np.repeat(to_face[None], count, axis=0), np.arange(count))
    summary = {"track_id": 0, "first_frame": start, "last_frame": start + count - 1, "frames": count,
               "restored": True, "skip_reason": "", "mean_score": None}  # fmt: skip
    return ClipFaces([], [summary], {0: aligned})
