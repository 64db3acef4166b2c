"""The demo archive: two real-footage films with the sizes, rates, sound, cuts and faces it promises."""
from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from faces_support import mobile_detector

from pipeline.demo import DEMO_FILMS
from pipeline.manifest import extra_columns, read_manifest
from pipeline.media import ffmpeg_exe, probe, read_frames
from pipeline.scenes import split_scenes

FILM_A, FILM_B = DEMO_FILMS
REPO = Path(__file__).resolve().parents[1]


def film_path(demo_archive: Path, video_id: str) -> Path:
    return demo_archive.parent / f"{video_id}.mp4"


def test_manifest_lists_both_films_with_their_collection(demo_archive):
    videos = read_manifest(demo_archive)

    assert videos["video_id"].tolist() == ["film_a", "film_b"]
    assert extra_columns(videos) == ["collection", "title"]
    assert videos["collection"].tolist() == ["dpt-batch demo", "dpt-batch demo"]
    assert all(Path(uri).is_file() and Path(uri).is_absolute() for uri in videos["uri"])


@pytest.mark.parametrize(
    ("video_id", "size", "rate", "frames", "audio"),
    [
        ("film_a", (1280, 720), Fraction(24000, 1001), 114, True),
        ("film_b", (640, 360), Fraction(25), 50, False),
    ],
)
def test_films_probe_with_the_promised_size_rate_length_and_sound(demo_archive, video_id, size, rate, frames,
                                                                  audio):
    info = probe(film_path(demo_archive, video_id))

    assert (info.width, info.height) == size
    assert info.frame_rate == rate
    assert info.frame_count == frames
    assert info.has_audio is audio
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    if audio:
        assert audio_seconds(film_path(demo_archive, video_id)) == pytest.approx(info.duration_s, abs=0.05)


def audio_seconds(path: Path) -> float:
    """Length of the first audio stream, from the last packet time ffmpeg reports while copying it."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-c", "copy",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    hours, minutes, seconds = re.findall(r"time=(\d+):(\d+):([\d.]+)", result.stderr)[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.mark.parametrize(("film", "cuts"), [(FILM_A, [30, 58, 84]), (FILM_B, [28])], ids=["film_a", "film_b"])
def test_scene_cuts_are_found_where_the_shots_were_joined(demo_archive, film, cuts):
    assert film.cuts == cuts
    path = film_path(demo_archive, film.video_id)

    clips = split_scenes(path)

    found = [clip.start for clip in clips if clip.index > 0 and clip.scene != clips[clip.index - 1].scene]
    assert len(found) == len(cuts), f"expected cuts near {cuts}, found {found}"
    assert all(abs(got - expected) <= 1 for got, expected in zip(found, cuts, strict=True)), found


def test_each_shot_shows_the_promised_number_of_faces(demo_archive, shared_dir):
    detector = mobile_detector(shared_dir)
    for film in DEMO_FILMS:
        path = film_path(demo_archive, film.video_id)
        starts = [0, *film.cuts]
        middles = [start + shot.frames // 2 for start, shot in zip(starts, film.shots, strict=True)]
        frames = np.stack([read_frames(path, middle, middle + 1)[0] for middle in middles])

        faces = [len(found) for found in detector.detect(frames)]

        assert faces == film.faces_per_shot == [len(shot.faces) for shot in film.shots], film.video_id
    assert FILM_A.faces_per_shot == [1, 2, 0, 1] and FILM_B.faces_per_shot == [1, 1]


def test_make_demo_restores_the_archive_and_ends_with_its_report():
    """`make demo` builds the archive, restores it into demo/out and writes the run's report last, so
    the last line it prints is the report's index.html (`dpt-batch report` prints it last)."""
    done = subprocess.run(["make", "-n", "demo", "FOOTAGE=."], cwd=REPO, capture_output=True, text=True,
                          check=True)  # fmt: skip
    script = " ".join(done.stdout.replace("\\\n", " ").split())
    build = '-m pipeline.demo "." demo &&'
    run = "-m pipeline.cli run --manifest demo/archive.parquet --output demo/out --config configs/smoke.yaml"
    report = "-m pipeline.cli report demo/out; else"
    assert script.index(build) < script.index(run) < script.index(report), script
