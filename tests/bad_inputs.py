"""The per-item bad-input matrix: small files that break a naive pipeline, and what a run must make of each.

Every item ends as one catalog row: `failed` with an error that names the file and the cause, or
`done` with every source frame in the output. The files are small (a few dozen frames, at most 256
pixels a side where the case allows) so that a whole run over them stays quick on two CPU cores.

The unreadable file is an ordinary file with mode 000. Root reads it anyway (CAP_DAC_OVERRIDE), so
a check that must fail to read it runs as a child process through `unprivileged_command`, which
drops the two capabilities that bypass file permissions when the tests run as root.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.media import ffmpeg_exe

FACE_FOOTAGE = "Lou_Lang.labeled_faces-5.mp4"  # 48 frames, 512x512, 20 fps, one face
# Frame times of a phone that cannot hold its rate: 20 fps on average, each frame up to 12 ms early or
# late, so no two frame durations are alike (the sine's step never exceeds the 50 ms frame period).
JITTERY_PTS = "(N*0.05+0.012*sin(N*2.3))/TB"
PERMISSION_BYPASSING_CAPS = ("cap_dac_override", "cap_dac_read_search")


@dataclass(frozen=True)
class BadInput:
    """One input of the matrix and the outcome a run must give it.

    Attributes:
        video_id: the manifest id (also the file's stem).
        path: the file (for `missing`, a path where nothing is).
        expected_status: "done" or "failed".
        error_contains: for failed items, a lowercase substring of the expected error.
        why: what makes the input hard, in a few words.
        unreadable: only a process run through `unprivileged_command` fails to read it.
    """

    video_id: str
    path: Path
    expected_status: str
    error_contains: str = ""
    why: str = ""
    unreadable: bool = False


def build_bad_inputs(folder: Path, footage: Path) -> list[BadInput]:
    """Write the matrix's files into `folder` from the real face clip in `footage`; returns the items."""
    folder.mkdir(parents=True, exist_ok=True)
    face = footage / FACE_FOOTAGE
    items = []

    def add(video_id: str, status: str, error: str = "", why: str = "", unreadable: bool = False) -> Path:
        path = folder / f"{video_id}.mp4"
        items.append(BadInput(video_id, path, status, error, why, unreadable))
        return path

    add("missing", "failed", "video file not found", "listed in the manifest, absent on disk")
    add("zero_byte", "failed", "zero-byte file", "an upload that never started").touch()
    add("letter", "failed", "text file", "a letter saved under a video's name").write_text(
        "Dear archivist,\nplease find the interview attached.\n"
    )
    faststart = add("truncated", "failed", "truncated", "index up front, the second half of the frames gone")
    cut_in_half(encode(face, faststart, frames=30, size="128:128", flags=["-movflags", "+faststart"]))
    index_last = add("truncated_index", "failed", "truncated", "index written last, so cut off with it")
    cut_in_half(encode(face, index_last, frames=30, size="128:128"))
    matroska = folder / "truncated_mkv.mkv"
    items.append(BadInput("truncated_mkv", matroska, "failed", "truncated", "a Matroska file cut short"))
    cut_in_half(encode(face, matroska, frames=30, size="128:128"))
    locked = add("unreadable", "failed", "permission denied", "mode 000 (root reads it all the same)", True)
    encode(face, locked, frames=10, size="128:128").chmod(0)
    one_frame = add("one_frame", "done", why="a single frame: the model pads short clips")
    encode(face, one_frame, frames=1, size="128:128")
    audio_only(add("audio_only", "failed", "no video stream", "an .mp4 holding only an AAC track"))
    phone_video(face, add("vfr_rotated", "done", why="irregular frame times, a 90-degree display rotation"))
    encode(face, add("ten_bit", "done", why="a 10-bit source"), frames=10, size="128:128",
           flags=["-pix_fmt", "yuv420p10le"])  # fmt: skip
    encode(face, add("odd_size", "done", why="odd width and height (4:4:4, as 4:2:0 needs even sizes)"),
           frames=10, size="255:145", flags=["-pix_fmt", "yuv444p"])  # fmt: skip
    return items


def unprivileged_command(argv: Sequence[str]) -> list[str]:
    """`argv`, run without the capabilities that let root read any file (unchanged for other users).

    Dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before the exec leaves the
    new root process with permission checks like any owner's: a mode 000 file cannot be opened.
    """
    if os.geteuid() != 0:
        return list(argv)
    if shutil.which("setpriv"):
        bounding = ",".join(f"-{cap.removeprefix('cap_')}" for cap in PERMISSION_BYPASSING_CAPS)
        return ["setpriv", "--inh-caps=-all", f"--bounding-set={bounding}", "--", *argv]
    if shutil.which("capsh"):
        return ["capsh", f"--drop={','.join(PERMISSION_BYPASSING_CAPS)}", "--", "-c", shlex.join(argv)]
    raise RuntimeError("running as root without setpriv or capsh: cannot drop the capabilities to read all")


def encode(source: Path, path: Path, frames: int, size: str, flags: Sequence[str] = ()) -> Path:
    """The first `frames` frames of `source`, scaled to `size` ("W:H"), as H.264 in `path`."""
    _ffmpeg(["-i", str(source), "-frames:v", str(frames), "-vf", f"scale={size}", "-an",
             "-c:v", "libx264", "-preset", "ultrafast", *flags, str(path)])  # fmt: skip
    return path


def cut_in_half(path: Path) -> Path:
    """Keep the first half of the file's bytes, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def audio_only(path: Path) -> Path:
    """One second of a 440 Hz tone as AAC in an .mp4, with no video stream."""
    _ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path)])
    return path


def phone_video(source: Path, path: Path, frames: int = 20) -> Path:
    """A phone-like clip: an upright 128x192 picture stored turned clockwise as 192x128 pixels, with a
    90-degree display rotation that turns it back; H.264 at a variable frame rate (every frame time
    jittered, 90 kHz time base), with a tone."""
    unrotated = path.with_name(f"unrotated-{path.name}")
    _ffmpeg(["-i", str(source), "-f", "lavfi", "-i", "sine=frequency=440", "-frames:v", str(frames),
             "-vf", f"scale=128:192,transpose=clock,settb=1/90000,setpts='{JITTERY_PTS}'", "-fps_mode", "vfr",
             "-enc_time_base", "1/90000", "-video_track_timescale", "90000", "-shortest",
             "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(unrotated)])  # fmt: skip
    _ffmpeg(["-display_rotation", "90", "-i", str(unrotated), "-c", "copy", str(path)])
    unrotated.unlink()
    return path


def _ffmpeg(arguments: Sequence[str]) -> None:
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *arguments]
    subprocess.run(command, check=True)

