"""Settings of the face side of the pipeline: detection, tracking, smoothing."""
from __future__ import annotations

from dataclasses import dataclass

DETECTOR_NAMES = ("retinaface_resnet50", "retinaface_mobile0.25")
FACE_MODES = ("detect", "aligned")
FACE_DEVICES = ("auto", "cpu", "cuda")
SMOOTHING_METHODS = ("savgol", "gaussian", "none")


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found, followed and filtered inside one scene clip.

    Attributes:
        mode: "detect" finds, tracks and aligns the faces of any footage and pastes them back;
            "aligned" takes videos that are aligned face crops already (square frames, e.g. VFHQ-style
            512x512 clips, upstream's own input) and restores whole frames: no detection, no paste-back
            (other square sizes are resized to 512 and back).
        detector: facexlib RetinaFace variant; "retinaface_mobile0.25" is the fast option.
        device: where detection runs: "cpu" in the faces actors; "cuda" in one detector actor per GPU
            (a share of the GPU it shares with a restoration actor), which the faces actors send their
            shrunk frames to; "auto": cuda when restoration runs on GPUs.
        detector_weights: path of a RetinaFace state dict to load instead of facexlib's download.
        detect_max_side: frames are shrunk so their longest side is at most this before detection
            (0 keeps the source size); boxes and landmarks are mapped back to source pixels.
        detect_batch_size: frames per detector forward pass.
        score_threshold: minimum RetinaFace face score.
        nms_threshold: IoU above which overlapping detections are merged by NMS.
        detect_every: detect on every Nth frame (and on the clip's last frame); faces on the
            frames between are interpolated.
        max_gap: frames without a detection that a track may bridge (by linear interpolation),
            beyond the detect_every - 1 frames that are never looked at.
        match_gate: largest association cost, (1 - box IoU) + landmark shift / face size, that
            still links a detection to a track.
        min_track_len: tracks with fewer frames are kept but marked not to restore.
        min_eye_dist: tracks whose median eye distance (px) is smaller are marked not to restore.
        max_face_overlap: a track whose box lies this much (intersection / its own area) inside a
            more confident track's box on most of their shared frames is marked not to restore:
            it is a false detection on a face (a forehead, say), and pasting it would deface it.
        smoothing: temporal filter of the landmarks along a track: "savgol", "gaussian" or "none".
        smoothing_window: filter length in frames (odd; shortened on short tracks).
        parsing_weights: path of facexlib's ParseNet state dict (parsing_parsenet.pth); when set,
            paste-back is limited to the parsed face (hair, neck and background keep the source).
    """

    mode: str = "detect"
    detector: str = "retinaface_resnet50"
    device: str = "auto"
    detector_weights: str | None = None
    detect_max_side: int = 640
    detect_batch_size: int = 8
    score_threshold: float = 0.8
    nms_threshold: float = 0.4
    detect_every: int = 1
    max_gap: int = 5
    match_gate: float = 1.0
    min_track_len: int = 5
    min_eye_dist: float = 10.0
    max_face_overlap: float = 0.5
    smoothing: str = "savgol"
    smoothing_window: int = 9
    parsing_weights: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in FACE_MODES:
            raise ValueError(f"faces.mode={self.mode!r}: choose one of {', '.join(FACE_MODES)}")
        if self.detector not in DETECTOR_NAMES:
            raise ValueError(f"faces.detector={self.detector!r}: choose one of {', '.join(DETECTOR_NAMES)}")
        if self.device not in FACE_DEVICES:
            raise ValueError(f"faces.device={self.device!r}: choose one of {', '.join(FACE_DEVICES)}")
        if self.smoothing not in SMOOTHING_METHODS:
            raise ValueError(
                f"faces.smoothing={self.smoothing!r}: choose one of {', '.join(SMOOTHING_METHODS)}"
            )
        _require(0.0 < self.score_threshold < 1.0, "score_threshold", self.score_threshold, "in (0, 1)")
        _require(0.0 < self.nms_threshold < 1.0, "nms_threshold", self.nms_threshold, "in (0, 1)")
        _require(self.detect_max_side >= 0, "detect_max_side", self.detect_max_side, ">= 0 (0: no cap)")
        _require(self.detect_batch_size >= 1, "detect_batch_size", self.detect_batch_size, ">= 1")
        _require(self.detect_every >= 1, "detect_every", self.detect_every, ">= 1")
        _require(self.max_gap >= 0, "max_gap", self.max_gap, ">= 0")
        _require(self.match_gate > 0, "match_gate", self.match_gate, "> 0")
        _require(self.min_track_len >= 1, "min_track_len", self.min_track_len, ">= 1")
        _require(self.min_eye_dist >= 0, "min_eye_dist", self.min_eye_dist, ">= 0")
        _require(0 < self.max_face_overlap <= 1, "max_face_overlap", self.max_face_overlap, "in (0, 1]")
        _require(self.smoothing_window >= 1, "smoothing_window", self.smoothing_window, ">= 1")


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"faces.{name}={value!r}: set it {expected}")
