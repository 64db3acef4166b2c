"""The typed records that travel between the stages of a run (and into OUT/state).

    VideoTask  a manifest row on its way into the probe stage
    ClipTask   one scene clip of a video, from the probe stage to the driver's assembly

A record holds ids, frame ranges, counts, times and references to artifacts, never frames. Ray Data
moves them as flat rows (`to_row`); `from_row` reads them back strictly, so a field that a stage adds
without declaring it here is an error, not a value silently dropped between two stages.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message`, for catalogs and tables."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class Record:
    """What the records share: flat rows in and out, read strictly."""

    def to_row(self) -> dict[str, Any]:
        """A flat row of plain values (what Ray Data and the JSON records hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]):
        """A record from a row of exactly its fields (values of numpy or Arrow types are converted).

        Raises:
            TypeError: the row has a field this record does not declare.
        """
        unknown = sorted(set(row) - set(_field_types(cls)))
        if unknown:
            name = cls.__name__
            raise TypeError(f"{name} rows have no field {', '.join(unknown)}: declare it on {name}")
        return cls(**_converted(cls, row))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]):
        """A record from a state record of this or an earlier version (fields it lacks take their
        defaults; fields no longer declared are left out)."""
        known = _field_types(cls)
        return cls(**_converted(cls, {name: value for name, value in record.items() if name in known}))


@dataclass(frozen=True)
class VideoTask(Record):
    """A video to restore: its manifest id and uri (all the driver hands to the probe stage), and what
    the probe stage learns of its source.

    Attributes:
        fingerprint: size and modification time (or ETag) of the source; "" when unreadable.
        video_key: the key of the video's result (pipeline.state.video_key).
    """

    video_id: str
    uri: str
    fingerprint: str = ""
    video_key: str = ""

    passes_through = False  # a video always goes into the probe stage


@dataclass(frozen=True)
class ClipTask(Record):
    """One scene clip (frames start..end of a video) and what the stages have done with it.

    A clip_index of -1 stands for a video that failed before it was cut into clips. Video-wide fields
    (frames_in, rate, size ...) ride on every clip, so that any node can assemble a video from its
    clips alone.

    Attributes:
        source: the local file the probe read (a URL's copy in its node's scratch folder); every other
            node makes its own copy (pipeline.artifacts.local_source).
        work_dir: the video's scratch folder, at the same path on every node, on each node's own disk.
        fingerprint: the source's fingerprint (pipeline.state.source_fingerprint).
        tracks_json: the clip's track summaries (catalog/tracks.parquet rows without ids), as JSON.
        face_crops: aligned crops to restore (pipeline.artifacts.pack_faces), carried through Ray's
            object store; b"" once consumed or if none. Never recorded.
        face_flows: optical flows of the input crops (pipeline.faces.stability.pack_flows), from the
            faces stage to the restore stage, which measures the restored crops with them; b"" once
            consumed or if none. Never recorded.
        restored_crops: restored crops to paste; b"" once consumed or if none. Never recorded.
        picture_frames: the shrunk frames of the restored tracks' pictures
            (pipeline.faces.pictures.pack_picture_frames), from the restore stage to the encode stage,
            which writes the pictures; b"" once consumed or if none. Never recorded.
        segment: the clip's encoded .mp4 once encoded: in the output's storage during a run
            (OUT/state/segments/...), else in the scratch folder.
        nodes: "stage:NODE" for each stage that worked on the clip (the first 8 hex digits of the Ray
            node id; "local" outside Ray), in order.
        weights: identity of the network weights (sha256, or synthetic:SEED).
        error: "stage: Type: message" once failed; every later stage passes the clip on untouched.
        clip_key: the clip's result key (pipeline.state.clip_key).
        resumed: finished by an earlier run (its segment and record are in place); passed on untouched.
        video_key: the key of the video's result (pipeline.state.video_key), which the probe stage works
            out from the source's fingerprint; the driver records the video under it.
        kept: the catalog rows ({"video", "clips", "tracks"}, as JSON) of a video whose earlier result
            stands, which the probe stage hands to the driver in one record instead of clips; passed on
            untouched.
    """

    video_id: str
    uri: str
    source: str
    work_dir: str
    fingerprint: str = ""
    clip_index: int = -1
    clip_count: int = 0
    start: int = 0
    end: int = 0
    scene: int = 0
    frames_in: int = 0
    fps_num: int = 0
    fps_den: int = 1
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    bit_depth: int = 8
    has_audio: bool = False
    tracks: int = 0
    faces: int = 0
    tracks_json: str = "[]"
    face_crops: bytes = field(default=b"", repr=False)
    face_flows: bytes = field(default=b"", repr=False)
    restored_crops: bytes = field(default=b"", repr=False)
    picture_frames: bytes = field(default=b"", repr=False)
    segment: str = ""
    frames_out: int = 0
    weights: str = ""
    error: str = ""
    traceback: str = field(default="", compare=False)
    seconds_probe: float = 0.0
    seconds_faces: float = 0.0
    seconds_restore: float = 0.0
    seconds_encode: float = 0.0
    clip_key: str = ""
    resumed: bool = False
    nodes: str = ""
    video_key: str = ""
    kept: str = ""

    @property
    def frame_count(self) -> int:
        return self.end - self.start

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den) if self.fps_num else Fraction(0)

    @property
    def passes_through(self) -> bool:
        """Failed clips, clips finished by an earlier run and kept videos go through every stage untouched."""
        return bool(self.error) or self.resumed or bool(self.kept)

    def failed(self, stage: str, error: BaseException, trace: str = "") -> ClipTask:
        """This clip, failed in `stage` with a one-line cause."""
        return replace(self, error=f"{stage}: {describe_error(error)}", traceback=trace)

    def recorded(self) -> dict[str, Any]:
        """The row to record (pipeline.state): everything but the crops in flight."""
        row = self.to_row()
        for name in ("face_crops", "face_flows", "restored_crops", "picture_frames"):
            del row[name]
        return row

    def track_summaries(self) -> list[dict[str, Any]]:
        return json.loads(self.tracks_json or "[]")


_CONVERTERS = {int: int, float: float, str: str, bool: bool, bytes: bytes}
_TYPES: dict[type, dict[str, type]] = {}


def _field_types(cls: type) -> dict[str, type]:
    if cls not in _TYPES:
        _TYPES[cls] = typing.get_type_hints(cls)
    return _TYPES[cls]


def _converted(cls: type, row: Mapping[str, Any]) -> dict[str, Any]:
    types = _field_types(cls)
    return {name: _CONVERTERS[types[name]](value) for name, value in row.items()}
