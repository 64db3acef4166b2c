"""Helpers that make small test videos with the real ffmpeg binary (lavfi sources, no files needed)."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from pipeline.media import ffmpeg_exe

SUBTITLES = "1\n00:00:00,000 --> 00:00:00,800\nhello\n\n2\n00:00:00,800 --> 00:00:01,200\nworld\n"


def make_video(
    path: Path,
    frames: int,
    rate: str = "24000/1001",
    size: str = "64x48",
    source: str = "testsrc",
    audio: bool = False,
    subtitles: bool = False,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    gop: int = 0,
    b_frames: int = 0,
    filters: str = "",
    colour: Sequence[str] = (),
) -> Path:
    """Encode `frames` frames of an ffmpeg test pattern (testsrc, smptebars, ...) into `path`.

    audio: a 440 Hz tone as long as the video; subtitles: two SubRip cues (srt in .mkv, mov_text in
    .mp4); rotation: display-matrix side data added by a stream copy (the pixels stay unrotated);
    gop, b_frames: a keyframe every `gop` frames with up to `b_frames` B-frames between references
    (0: the encoder's choice; ultrafast makes no B-frames); filters: a filter chain after the source
    ("hue=s=0.5,gblur=sigma=3"); colour: output options such as ("-colorspace", "bt709").
    """
    seconds = float(frames / Fraction(rate))
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    command += ["-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}" + (f",{filters}" if filters else "")]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text(SUBTITLES)
        command += ["-i", str(srt)]
    command += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt]
    command += colour
    if gop:
        command += ["-g", str(gop)]
    if b_frames:
        command += ["-bf", str(b_frames)]
    if audio:
        command += ["-c:a", "aac"]
    if subtitles:
        command += ["-c:s", "srt" if path.suffix == ".mkv" else "mov_text"]
    target = path.with_name(f"unrotated-{path.name}") if rotation else path
    subprocess.run([*command, str(target)], check=True)
    if rotation:
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
             "-display_rotation", str(rotation), "-i", str(target), "-c", "copy", str(path)],
            check=True,
        )
        target.unlink()
    return path
