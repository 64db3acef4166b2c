"""Face tracks inside one scene clip: detect, link frame to frame, bridge gaps, smooth, filter."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.faces.detect import Detection
from pipeline.faces.settings import FaceSettings
from pipeline.faces.smooth import smooth_landmarks

SHORT_TRACK = "short_track"
SMALL_FACE = "small_face"
INSIDE_OTHER_FACE = "inside_other_face"
_INFEASIBLE = 1e6


class Detector(Protocol):
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


@dataclass(eq=False)
class Track:
    """One face followed through consecutive frames of one clip.

    Attributes:
        clip: id of the scene clip the track belongs to.
        track_id: number of the track inside its clip, in order of first appearance.
        frames: (T,) int64 consecutive frame indices, relative to the clip's first frame.
        boxes: Tx4 float32 x0, y0, x1, y1 in frame pixels (interpolated where not detected).
        scores: (T,) float32 detector scores, NaN where not detected.
        detected: (T,) bool, whether the detector saw the face on that frame.
        landmarks: Tx5x2 float32 detected landmarks (interpolated where not detected).
        smoothed_landmarks: Tx5x2 float32 landmarks after temporal smoothing; alignment uses these.
        skip_reason: "" when the track is to be restored, else why not ("short_track", "small_face",
            "inside_other_face").
    """

    clip: str
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    detected: np.ndarray
    landmarks: np.ndarray
    smoothed_landmarks: np.ndarray
    skip_reason: str = ""

    @property
    def restore(self) -> bool:
        return self.skip_reason == ""

    def __len__(self) -> int:
        return len(self.frames)

    def eye_distances(self) -> np.ndarray:
        """(T,) distance in pixels between the two eye landmarks on each frame."""
        return np.linalg.norm(self.landmarks[:, 1] - self.landmarks[:, 0], axis=-1)

    def rows(self) -> list[dict]:
        """One flat dict per frame, ready for pyarrow.Table.from_pylist and Parquet."""
        return [
            {
                "clip": self.clip,
                "track_id": self.track_id,
                "frame": int(frame),
                "box": self.boxes[i].tolist(),
                "score": float(self.scores[i]),
                "detected": bool(self.detected[i]),
                "landmarks": self.landmarks[i].reshape(-1).tolist(),
                "smoothed_landmarks": self.smoothed_landmarks[i].reshape(-1).tolist(),
                "restore": self.restore,
                "skip_reason": self.skip_reason,
            }
            for i, frame in enumerate(self.frames)
        ]


def track_faces(
    frames: np.ndarray | Sequence[np.ndarray],
    detector: Detector,
    settings: FaceSettings | None = None,
    clip: str = "",
    shrunk: np.ndarray | None = None,
    scale: float = 1.0,
) -> list[Track]:
    """Detect and track the faces of one scene clip.

    Arguments:
        frames: TxHxWx3 uint8 RGB frames of the clip (a sequence of HxWx3 works too).
        detector: a FaceDetector (anything with its `detect(frames) -> list[list[Detection]]`, and
            `detect_shrunk(frames, scale)` when `shrunk` is given).
        settings: detection, tracking and smoothing thresholds; FaceSettings() if None.
        clip: id written into each Track.
        shrunk: the same frames in BGR shrunk by `scale` for the detector (decoded so,
            pipeline.media.read_pictures_with_preview); None: the detector
            shrinks `frames` itself.
    Returns:
        the clip's tracks in order of first appearance, those not to restore included and marked.
    """
    settings = settings or FaceSettings()
    frame_indices = detection_frame_indices(len(frames), settings.detect_every)
    if shrunk is not None:
        detections = detector.detect_shrunk([shrunk[i] for i in frame_indices], scale)
    else:
        detections = detector.detect([frames[i] for i in frame_indices])
    return build_tracks(dict(zip(frame_indices, detections, strict=True)), settings, clip)


def detection_frame_indices(frame_count: int, detect_every: int) -> list[int]:
    """Every `detect_every`th frame plus the last, so every track can be interpolated to the end."""
    if frame_count == 0:
        return []
    indices = list(range(0, frame_count, detect_every))
    if indices[-1] != frame_count - 1:
        indices.append(frame_count - 1)
    return indices


def build_tracks(
    detections_by_frame: dict[int, list[Detection]], settings: FaceSettings, clip: str = ""
) -> list[Track]:
    """Link per-frame detections into filled, smoothed and filtered tracks.

    Arguments:
        detections_by_frame: clip-relative frame index -> faces detected on it, for the frames
            where detection ran.
        settings: gap, gate, filter and smoothing settings.
        clip: id written into each Track.
    """
    max_missing = max(settings.max_gap, settings.detect_every - 1)
    linked = link_detections(detections_by_frame, max_missing, settings.match_gate)
    tracks = []
    for track_id, observations in enumerate(linked):
        track = fill_track(observations, clip, track_id)
        track.smoothed_landmarks = smooth_landmarks(
            track.landmarks, settings.smoothing, settings.smoothing_window
        )
        track.skip_reason = skip_reason(track, settings)
        tracks.append(track)
    mark_tracks_inside_other_faces(tracks, settings.max_face_overlap)
    return tracks


Observation = tuple[int, Detection]


@dataclass
class _OpenTrack:
    observations: list[Observation] = field(default_factory=list)

    @property
    def last_frame(self) -> int:
        return self.observations[-1][0]

    @property
    def last(self) -> Detection:
        return self.observations[-1][1]


def link_detections(
    detections_by_frame: dict[int, list[Detection]], max_missing: int, gate: float
) -> list[list[Observation]]:
    """Chain detections frame by frame with an optimal assignment.

    A track takes part in the assignment while it has missed at most `max_missing` frames; a pair
    costing more than `gate` is never linked, and a detection left over starts a new track.

    Returns:
        the observations (frame index, detection) of each track, tracks in order of first frame.
    """
    tracks: list[_OpenTrack] = []
    open_tracks: list[_OpenTrack] = []
    for frame_index in sorted(detections_by_frame):
        detections = detections_by_frame[frame_index]
        open_tracks = [t for t in open_tracks if frame_index - t.last_frame - 1 <= max_missing]
        costs = association_costs([t.last for t in open_tracks], detections)
        rows, cols = linear_sum_assignment(np.where(costs <= gate, costs, _INFEASIBLE))
        linked_detections = set()
        for row, col in zip(rows, cols, strict=True):
            if costs[row, col] <= gate:
                open_tracks[row].observations.append((frame_index, detections[col]))
                linked_detections.add(col)
        for col, detection in enumerate(detections):
            if col not in linked_detections:
                new_track = _OpenTrack([(frame_index, detection)])
                tracks.append(new_track)
                open_tracks.append(new_track)
    return [t.observations for t in tracks]


def association_costs(previous: Sequence[Detection], current: Sequence[Detection]) -> np.ndarray:
    """MxN cost of linking each previous face to each current one.

    cost = (1 - box IoU) + mean landmark shift / previous face size, where face size is the
    square root of the previous box's area, so the cost does not depend on the film's resolution.
    """
    if not previous or not current:
        return np.zeros((len(previous), len(current)))
    previous_boxes = np.stack([d.box for d in previous]).astype(np.float64)
    current_boxes = np.stack([d.box for d in current]).astype(np.float64)
    previous_landmarks = np.stack([d.landmarks for d in previous]).astype(np.float64)
    current_landmarks = np.stack([d.landmarks for d in current]).astype(np.float64)
    shift = np.linalg.norm(previous_landmarks[:, None] - current_landmarks[None], axis=-1).mean(-1)
    face_size = np.sqrt(np.maximum(_box_areas(previous_boxes), 1.0))
    return (1.0 - box_iou(previous_boxes, current_boxes)) + shift / face_size[:, None]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Mx4 and Nx4 xyxy boxes -> MxN intersection over union."""
    intersection = _intersection_areas(boxes_a[:, None], boxes_b[None])
    union = _box_areas(boxes_a)[:, None] + _box_areas(boxes_b)[None] - intersection
    return intersection / np.maximum(union, 1e-9)


def _intersection_areas(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """...x4 and ...x4 xyxy boxes (broadcast) -> ... areas of their overlaps."""
    top_left = np.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = np.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    return np.clip(bottom_right - top_left, 0, None).prod(-1)


def _box_areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2:] - boxes[..., :2], 0, None).prod(-1)


def fill_track(observations: list[Observation], clip: str, track_id: int) -> Track:
    """A Track over every frame from the first observation to the last, gaps linearly interpolated."""
    observed_frames = np.array([frame for frame, _ in observations], dtype=np.int64)
    frames = np.arange(observed_frames[0], observed_frames[-1] + 1, dtype=np.int64)
    observed_boxes = np.stack([d.box for _, d in observations])
    observed_landmarks = np.stack([d.landmarks for _, d in observations]).reshape(len(observations), 10)
    detected = np.isin(frames, observed_frames)
    scores = np.full(len(frames), np.nan, dtype=np.float32)
    scores[detected] = [d.score for _, d in observations]
    landmarks = _interpolate(frames, observed_frames, observed_landmarks).reshape(-1, 5, 2)
    return Track(
        clip=clip,
        track_id=track_id,
        frames=frames,
        boxes=_interpolate(frames, observed_frames, observed_boxes),
        scores=scores,
        detected=detected,
        landmarks=landmarks,
        smoothed_landmarks=landmarks.copy(),
    )


def _interpolate(frames: np.ndarray, observed_frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values (K, C) known at observed_frames -> (T, C) float32 at frames, linear in between."""
    columns = [np.interp(frames, observed_frames, values[:, c]) for c in range(values.shape[1])]
    return np.stack(columns, axis=1).astype(np.float32)


def skip_reason(track: Track, settings: FaceSettings) -> str:
    """Why a track is kept out of restoration, or "" when it is restored.

    The eye-distance test uses the track's median so a face near the limit is restored on all of
    its frames or on none, rather than flickering between restored and not.
    """
    if len(track) < settings.min_track_len:
        return SHORT_TRACK
    if float(np.median(track.eye_distances())) < settings.min_eye_dist:
        return SMALL_FACE
    return ""


def mark_tracks_inside_other_faces(tracks: Sequence[Track], max_overlap: float) -> None:
    """Mark restorable tracks that mostly sit inside a more confident track's box.

    A track is marked when, on at least half of the frames it shares with the other track, more
    than `max_overlap` of its box area lies inside the other's box. IoU-based NMS lets such boxes
    through when they are much smaller than the face they sit on.
    """
    for track in tracks:
        others = (other for other in tracks if other is not track)
        if track.restore and any(_sits_inside(track, other, max_overlap) for other in others):
            track.skip_reason = INSIDE_OTHER_FACE


def _sits_inside(track: Track, other: Track, max_overlap: float) -> bool:
    if _confidence(other) <= _confidence(track):
        return False
    shared, in_track, in_other = np.intersect1d(track.frames, other.frames, return_indices=True)
    if len(shared) == 0:
        return False
    boxes, other_boxes = track.boxes[in_track], other.boxes[in_other]
    covered = _intersection_areas(boxes, other_boxes) > max_overlap * np.maximum(_box_areas(boxes), 1e-9)
    return covered.mean() >= 0.5


def _confidence(track: Track) -> float:
    return float(np.nanmean(track.scores))


def skip_counts(tracks: Sequence[Track]) -> dict[str, int]:
    """Number of tracks restored and kept out, by reason: {"restore": n, "short_track": n, ...}."""
    counts = {"restore": 0, SHORT_TRACK: 0, SMALL_FACE: 0, INSIDE_OTHER_FACE: 0}
    for track in tracks:
        counts[track.skip_reason or "restore"] += 1
    return counts
