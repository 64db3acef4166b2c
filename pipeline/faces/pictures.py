"""Pictures of a restored track, made during the run for people to look at (issue 13):

    contact sheet   a few frames spread across the track, input row above restored row (JPEG)
    flipbook        input beside restored over the track's least stable stretch (animated WebP)

Each track gets the same two pictures whatever its length (SHEET_FRAMES frames, at most FLIPBOOK_MAX),
so a long film costs no more pictures per track than a short one. The restore stage holds the input
and restored crops; it picks and shrinks the few frames the pictures need (`picture_frames`, cheap
beside the network), and the encode stage, on CPU actors, encodes them and writes them under
OUT/report/pictures/ (`publish_pictures`), so that neither the compression nor the storage's latency
delays the GPU.
"""
from __future__ import annotations

import io
import re
from collections.abc import Mapping
from fractions import Fraction

import cv2
import numpy as np

from pipeline.packing import pack_arrays, unpack_arrays

SHEET_FRAMES = 6
SHEET_SIDE = 160
FLIPBOOK_SIDE = 256
FLIPBOOK_MAX = 32
PICTURES_DIR = ("report", "pictures")
_GAP = 4  # pixels between the pictures of a sheet, and between the two halves of a flipbook frame


def sheet_indices(frames: int, n: int = SHEET_FRAMES) -> np.ndarray:
    """Up to `n` track-relative frame indices spread evenly from the first frame to the last."""
    if not frames:
        return np.zeros(0, int)
    return np.unique(np.linspace(0, frames - 1, min(n, frames)).round().astype(int))


def shrink(crops: np.ndarray, side: int) -> np.ndarray:
    """TxSxSx3 uint8 -> Tx`side`x`side`x3 uint8 (area averaging)."""
    return np.stack([cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA) for crop in crops])


def contact_sheet(
    before: np.ndarray, after: np.ndarray, n: int = SHEET_FRAMES, first_frame: int = 0,
    numbers: np.ndarray | None = None, side: int = SHEET_SIDE, quality: int = 85,
) -> bytes:  # fmt: skip
    """JPEG bytes: `n` frames spread across the track, input above restored, each `side` pixels, with its
    video frame number (`first_frame` + index, or `numbers` when the frames were picked already)."""
    if numbers is None:
        picked = sheet_indices(len(before), n)
        before, after, numbers = before[picked], after[picked], first_frame + picked
    before, after = _sized(before, side), _sized(after, side)
    count = len(before)
    label = 18
    sheet = np.full((label + 2 * side + _GAP, count * side + (count - 1) * _GAP, 3), 255, np.uint8)
    for i in range(count):
        x = i * (side + _GAP)
        cv2.putText(sheet, str(int(numbers[i])), (x + 2, label - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        sheet[label : label + side, x : x + side] = before[i]
        sheet[label + side + _GAP :, x : x + side] = after[i]
    return _encoded([sheet], "JPEG", quality=quality)


def flipbook(
    before: np.ndarray, after: np.ndarray, start: int = 0, length: int = FLIPBOOK_MAX,
    frame_rate: float | Fraction = 25, side: int = FLIPBOOK_SIDE, quality: int = 70,
) -> bytes:  # fmt: skip
    """Animated WebP bytes: frames start..start+length (at most FLIPBOOK_MAX) of the track, input on the
    left and restored on the right, each `side` pixels high, looping at the track's frame rate."""
    length = min(length, FLIPBOOK_MAX)
    before, after = _sized(before[start : start + length], side), _sized(after[start : start + length], side)
    gap = np.full((side, _GAP, 3), 255, np.uint8)
    frames = [np.concatenate([b, gap, a], axis=1) for b, a in zip(before, after, strict=True)]
    milliseconds = round(1000 / float(frame_rate)) if frame_rate else 40
    return _encoded(frames, "WEBP", quality=quality, method=0, duration=milliseconds, loop=0)


def picture_frames(inputs: np.ndarray, restored: np.ndarray, first_frame: int, stretch_start: int,
                   stretch: int = FLIPBOOK_MAX) -> dict[str, np.ndarray]:  # fmt: skip
    """The shrunk frames a track's pictures need (what rides from the restore stage to the encode
    stage): the sheet's frames and their video frame numbers, and the flipbook's stretch (`stretch`
    frames from video frame `stretch_start`)."""
    picked = sheet_indices(len(inputs))
    begin = max(0, stretch_start - first_frame)
    end = min(len(inputs), begin + min(stretch, FLIPBOOK_MAX))
    return {"sheet_before": shrink(inputs[picked], SHEET_SIDE),
            "sheet_after": shrink(restored[picked], SHEET_SIDE), "sheet_numbers": first_frame + picked,
            "flip_before": shrink(inputs[begin:end], FLIPBOOK_SIDE),
            "flip_after": shrink(restored[begin:end], FLIPBOOK_SIDE)}  # fmt: skip


def pack_picture_frames(tracks: Mapping[int, Mapping[str, np.ndarray]]) -> bytes:
    """track id -> picture_frames, as packed arrays (pipeline.packing; b"" for none)."""
    return pack_arrays({f"{name}_{track}": array for track, arrays in tracks.items()
                        for name, array in arrays.items()})  # fmt: skip


def unpack_picture_frames(data: bytes) -> dict[int, dict[str, np.ndarray]]:
    """What `pack_picture_frames` packed."""
    tracks: dict[int, dict[str, np.ndarray]] = {}
    for key, array in unpack_arrays(data).items():
        name, _, track = key.rpartition("_")
        tracks.setdefault(int(track), {})[name] = array
    return tracks


def pictures_folder(video_id: str) -> str:
    """The video's folder of pictures, relative to OUT (a video id made safe as one path part)."""
    return "/".join([*PICTURES_DIR, re.sub(r"[^A-Za-z0-9._-]", "_", video_id).lstrip(".") or "_"])


def publish_pictures(
    output: str, video_id: str, clip_index: int, frame_rate: float | Fraction,
    tracks: Mapping[int, Mapping[str, np.ndarray]],
) -> dict[int, dict[str, str]]:  # fmt: skip
    """Encode each track's pictures from its `picture_frames` and write them under OUT (local folder or
    URL), each atomically; returns track id -> {"sheet", "flipbook"}: their paths relative to OUT."""
    from pipeline.storage import join, write_atomically

    folder = pictures_folder(video_id)
    written = {}
    for track, frames in tracks.items():
        paths = {"sheet": f"{folder}/clip{clip_index:05d}-track{track}-sheet.jpg",
                 "flipbook": f"{folder}/clip{clip_index:05d}-track{track}-flipbook.webp"}  # fmt: skip
        pictures = {"sheet": contact_sheet(frames["sheet_before"], frames["sheet_after"],
                                           numbers=frames["sheet_numbers"]),
                    "flipbook": flipbook(frames["flip_before"], frames["flip_after"], frame_rate=frame_rate)}
        for kind, data in pictures.items():
            write_atomically(join(output, *paths[kind].split("/")), lambda sink, data=data: sink.write(data))
        written[track] = paths
    return written


def _sized(images: np.ndarray, side: int) -> np.ndarray:
    return images if images.shape[1:3] == (side, side) else shrink(images, side)


def _encoded(frames: list[np.ndarray], kind: str, **options) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    sink = io.BytesIO()
    if len(images) > 1:
        options.update(save_all=True, append_images=images[1:])
    images[0].save(sink, kind, **options)
    return sink.getvalue()
