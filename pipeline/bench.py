"""Pipeline benchmark: 720p films of 1 and 4 minutes through `dpt-batch run` with the tiny network.

    python -m pipeline.bench --footage ../shared/footage --minutes 1 4 --out bench-results/pipeline-cpu.md

Films are made from the shared face footage (4-second shots, a face in every third, 23.976 fps, sound);
the longer film repeats the 1-minute one. Each film runs in a fresh embedded Ray; peak memory is the
largest sum of resident memory over this process and all its descendants (Ray's workers included),
sampled every 0.2 s. Reports frames/s, the share of stage time, and how peak memory grows with length.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

from pipeline.config import load_settings
from pipeline.demo import DemoFilm, Face, Shot, render_film
from pipeline.media import ffmpeg_exe

FOOTAGE = (
    "Francis_Collins.labeled_faces-3.mp4",
    "Lou_Lang.labeled_faces-5.mp4",
    "Lesia_Burlak.labeled_faces-0.mp4",
    "Felicity_Huffman.labeled_faces-5.mp4",
    "Garry_Kasparov.labeled_faces-3.mp4",
    "Jan_Bjoerklund.labeled_faces-0.mp4",
)
BACKGROUNDS = ("0x1f2a36", "0xc8b89a", "0x23402a", "0x5a3040")
RATE = Fraction(24000, 1001)
SHOT_FRAMES = 96
FACE_EVERY = 3  # a face in every third shot keeps the 4-minute run within a quarter hour on 2 cores
STAGES = ("probe", "faces", "restore", "encode")


def minute_film(face_every: int = FACE_EVERY) -> DemoFilm:
    """One minute of 720p shots; every `face_every`-th shot holds a face (placed differently each time),
    the others a test pattern."""
    shots = []
    for index in range(round(60 * RATE / SHOT_FRAMES)):
        if index % face_every:
            shots.append(Shot(SHOT_FRAMES, "testsrc2"))
            continue
        face = Face(FOOTAGE[index % len(FOOTAGE)], 120 + 160 * (index % 5), 100 + 30 * (index % 4), 400)
        shots.append(Shot(SHOT_FRAMES, f"color=c={BACKGROUNDS[index % len(BACKGROUNDS)]}", (face,)))
    return DemoFilm("bench_1min", "benchmark", 1280, 720, RATE, True, tuple(shots))


def make_films(footage: Path, folder: Path, minutes: list[int]) -> dict[int, Path]:
    """The 1-minute film, and longer ones made by joining it `m` times (stream copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    one = render_film(minute_film(), footage, folder / "bench_1min.mp4")
    films = {}
    for m in minutes:
        if m == 1:
            films[m] = one
            continue
        listing = folder / f"list_{m}.txt"
        listing.write_text("".join(f"file '{one.resolve()}'\n" for _ in range(m)))
        films[m] = folder / f"bench_{m}min.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
             "-c", "copy", str(films[m])],
            check=True,
        )  # fmt: skip
    return films


def tree_rss_bytes(root: int) -> int:
    """Resident memory of process `root` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry.name)] = int(line.split()[1]) * 1024
    total, frontier = 0, [root]
    while frontier:
        pid = frontier.pop()
        total += rss.get(pid, 0)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return total


class PeakMemory:
    """Samples `tree_rss_bytes(os.getpid())` in a thread while the block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_film(path: Path, out: Path, weights: Path) -> dict:
    import ray

    from pipeline.run import run_archive

    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    with PeakMemory() as memory:
        start = time.perf_counter()
        summary = run_archive([{"video_id": path.stem, "uri": str(path)}], out, settings, report=print)
        seconds = time.perf_counter() - start
    ray.shutdown()
    video = summary.videos[0]
    if video["status"] != "done":
        raise SystemExit(f"{path}: {video['error']}")
    return {"video": video, "seconds": seconds, "peak_gb": memory.peak / 1024**3}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path("../shared/footage"))
    parser.add_argument("--weights", type=Path, default=Path("../shared/weights/retinaface_mobile0.25.pth"))
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--work", type=Path, default=Path("bench-results/pipeline-work"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from model.bench import emit

    films = make_films(args.footage, args.work / "films", args.minutes)
    results = {m: run_film(films[m], args.work / f"out_{m}", args.weights) for m in args.minutes}
    lines = [
        "### The pipeline on the CPU: 720p films, tiny network (configs/smoke.yaml)",
        "",
        f"- command: `python -m pipeline.bench --minutes {' '.join(map(str, args.minutes))}`; "
        f"date: {dt.date.today().isoformat()}; machine: {os.cpu_count()} cores, embedded local Ray",
        "- films: 1280x720 at 24000/1001 fps with AAC sound, 4-second shots, one face in every third shot",
        "",
        "| film | frames | face-frames | seconds | frames/s | "
        + " | ".join(f"{stage} share" for stage in STAGES)
        + " | peak memory (GB) |",
        "|---|---|---|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    for m, result in results.items():
        video = result["video"]
        stage_seconds = {stage: video[f"seconds_{stage}"] for stage in STAGES}
        total = sum(stage_seconds.values()) or 1.0
        shares = " | ".join(f"{stage_seconds[stage] / total * 100:.0f}%" for stage in STAGES)
        lines.append(
            f"| {m} min | {video['frames_out']} | {video['faces_restored']} | {result['seconds']:.0f} | "
            f"{video['frames_out'] / result['seconds']:.2f} | {shares} | {result['peak_gb']:.2f} |"
        )
    if 1 in results and len(results) > 1:
        longest = max(results)
        ratio = results[longest]["peak_gb"] / results[1]["peak_gb"]
        lines += [
            "",
            f"- peak memory, {longest}-minute film over the 1-minute film: **{ratio:.2f}x** (goal <= 1.3x)",
        ]
    lines += ["- stage shares are of the seconds each stage's actors spent (they run concurrently)"]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
