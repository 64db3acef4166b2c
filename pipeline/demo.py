"""A small demo archive built from the shared face footage: two short films with known cuts and faces.

    film_a.mp4   1280x720, 24000/1001 fps, AAC audio, 114 frames (4.75 s), four shots:
                 one face (off centre) | two faces side by side | no face (testsrc2) | one face
    film_b.mp4   640x360, 25 fps, no audio, 50 frames (2 s), two shots of one face each
    archive.parquet  the manifest: uri, video_id, collection, title

Each film is made by one ffmpeg call whose filter graph places the footage clips (512x512, 20 fps)
on backgrounds, converts them to the film's rate with the fps filter, trims every shot to an exact
number of frames and joins the shots with hard cuts. DEMO_FILMS says what each film holds (sizes,
rate, shot lengths, faces per shot), so tests and examples can check against it.

    python -m pipeline.demo ../shared/footage demo     # what `make demo` runs
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.media import MediaError, ffmpeg_exe
from pipeline.storage import write_atomically

MANIFEST_FILE = "archive.parquet"
COLLECTION = "dpt-batch demo"
AUDIO_RATE = 48000


@dataclass(frozen=True)
class Face:
    """A footage clip placed in a shot: `footage` file name, scaled to `size`x`size` at (x, y)."""

    footage: str
    x: int
    y: int
    size: int


@dataclass(frozen=True)
class Shot:
    """`frames` frames of a background (an ffmpeg source: "color=c=0x1f2a36", "testsrc2") with faces on it."""

    frames: int
    background: str
    faces: tuple[Face, ...] = ()


@dataclass(frozen=True)
class DemoFilm:
    """One film of the demo archive and what it holds."""

    video_id: str
    title: str
    width: int
    height: int
    rate: Fraction
    audio: bool
    shots: tuple[Shot, ...]

    @property
    def file_name(self) -> str:
        return f"{self.video_id}.mp4"

    @property
    def frame_count(self) -> int:
        return sum(shot.frames for shot in self.shots)

    @property
    def duration_s(self) -> float:
        return float(self.frame_count / self.rate)

    @property
    def cuts(self) -> list[int]:
        """Frames where shots 2, 3, ... start."""
        starts, frame = [], 0
        for shot in self.shots[:-1]:
            frame += shot.frames
            starts.append(frame)
        return starts

    @property
    def faces_per_shot(self) -> list[int]:
        return [len(shot.faces) for shot in self.shots]

    @property
    def footage(self) -> list[str]:
        return sorted({face.footage for shot in self.shots for face in shot.faces})


# Footage clips that hold a single shot each (no cut inside; see tests/test_scenes.py).
FRANCIS = "Francis_Collins.labeled_faces-3.mp4"
LOU = "Lou_Lang.labeled_faces-5.mp4"
LESIA = "Lesia_Burlak.labeled_faces-0.mp4"
FELICITY = "Felicity_Huffman.labeled_faces-5.mp4"

DEMO_FILMS = (
    DemoFilm(
        video_id="film_a",
        title="Four shots at 23.976 fps with sound: one face, two faces, no face, one face",
        width=1280,
        height=720,
        rate=Fraction(24000, 1001),
        audio=True,
        shots=(
            Shot(30, "color=c=0x1f2a36", (Face(FRANCIS, 140, 200, 400),)),
            Shot(28, "color=c=0xc8b89a", (Face(LOU, 170, 150, 420), Face(LESIA, 690, 150, 420))),
            Shot(26, "testsrc2"),
            Shot(30, "color=c=0x23402a", (Face(FELICITY, 780, 120, 460),)),
        ),
    ),
    DemoFilm(
        video_id="film_b",
        title="Two shots at 25 fps without sound, one face each",
        width=640,
        height=360,
        rate=Fraction(25),
        audio=False,
        shots=(
            Shot(28, "color=c=0x404040", (Face(LESIA, 60, 40, 280),)),
            Shot(22, "color=c=0xa0c0e0", (Face(LOU, 330, 50, 280),)),
        ),
    ),
)


def build_demo_archive(footage_dir: str | Path, out_dir: str | Path) -> Path:
    """Make the DEMO_FILMS from the footage in `footage_dir` and their manifest; returns the manifest path.

    Films and manifest are written under `out_dir` (created), each under a temporary name first, so an
    interrupted build leaves no half film. An existing archive there is replaced.

    Raises:
        FileNotFoundError: a footage clip the films need is not in `footage_dir`.
        MediaError: ffmpeg failed.
    """
    footage_dir, out_dir = Path(footage_dir), Path(out_dir)
    needed = sorted({name for film in DEMO_FILMS for name in film.footage})
    missing = [name for name in needed if not (footage_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{footage_dir}: footage for the demo archive is missing: {', '.join(missing)} "
            "(the clips of ../shared/footage are expected)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for film in DEMO_FILMS:
        path = render_film(film, footage_dir, out_dir / film.file_name)
        rows.append({"uri": str(path.resolve()), "video_id": film.video_id, "collection": COLLECTION,
                     "title": film.title})  # fmt: skip
    manifest = out_dir / MANIFEST_FILE
    table = pa.Table.from_pylist(rows)
    write_atomically(manifest, lambda sink: pq.write_table(table, sink))
    return manifest


def render_film(film: DemoFilm, footage_dir: Path, path: Path) -> Path:
    """Encode one film with a single ffmpeg call (H.264 CRF 18 yuv420p, AAC when film.audio)."""
    inputs = [footage_dir / face.footage for shot in film.shots for face in shot.faces]
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    for source in inputs:
        command += ["-i", str(source)]
    command += ["-filter_complex", filter_graph(film), "-map", "[v]"]
    if film.audio:
        command += ["-map", "[a]"]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                "-r", str(film.rate), "-frames:v", str(film.frame_count)]  # fmt: skip
    if film.audio:
        command += ["-c:a", "aac", "-b:a", "128k"]
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    command += ["-movflags", "+faststart", str(temporary)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        temporary.unlink(missing_ok=True)
        raise MediaError(f"{path}: ffmpeg could not make the demo film: {result.stderr.strip()[-800:]}")
    os.replace(temporary, path)
    return path


def filter_graph(film: DemoFilm) -> str:
    """The filter_complex of a film: per shot a background, faces overlaid, an exact trim; then concat.

    Input i of the ffmpeg call is the i-th face of the film, in shot order.
    """
    size, rate = f"{film.width}x{film.height}", str(film.rate)
    chains, face_input = [], 0
    for index, shot in enumerate(film.shots):
        seconds = float(shot.frames / film.rate) + 1
        joiner = ":" if "=" in shot.background else "="
        chains.append(f"{shot.background}{joiner}s={size}:r={rate}:d={seconds:.3f},setsar=1[bg{index}]")
        below = f"bg{index}"
        for number, face in enumerate(shot.faces):
            chains.append(
                f"[{face_input}:v]fps={rate},setpts=PTS-STARTPTS,scale={face.size}:{face.size},setsar=1"
                f"[face{index}_{number}]"
            )
            chains.append(
                f"[{below}][face{index}_{number}]overlay=x={face.x}:y={face.y}:eof_action=repeat"
                f"[layer{index}_{number}]"
            )
            below = f"layer{index}_{number}"
            face_input += 1
        chains.append(f"[{below}]trim=end_frame={shot.frames},setpts=PTS-STARTPTS,format=yuv420p[shot{index}]")
    joined = "".join(f"[shot{index}]" for index in range(len(film.shots)))
    chains.append(f"{joined}concat=n={len(film.shots)}:v=1:a=0[v]")
    if film.audio:
        chains.append(f"sine=frequency=440:beep_factor=4:sample_rate={AUDIO_RATE}:duration={film.duration_s:.6f}[a]")
    return ";".join(chains)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        print("usage: python -m pipeline.demo FOOTAGE_DIR OUT_DIR", file=sys.stderr)
        return 2
    manifest = build_demo_archive(*arguments)
    for film in DEMO_FILMS:
        print(
            f"{manifest.parent / film.file_name}: {film.width}x{film.height} at {film.rate} fps, "
            f"{film.frame_count} frames, cuts at {film.cuts}, faces per shot {film.faces_per_shot}"
        )
    print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
