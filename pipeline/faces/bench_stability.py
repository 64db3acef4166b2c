"""What the temporal-stability metrics and the pictures of a restored track cost (issue 13): CPU core-ms
per face-frame for each part, in the stage that pays it.

    python -m pipeline.faces.bench_stability --footage ../shared/footage --out bench-results/stability-cpu.md

The crops are real faces (the footage's face clips resized to the 512 template, as aligned mode makes
them); the "restored" crops are the same blurred and noised, a stand-in whose cost is the network's
output's (the measures do not depend on the content beyond the flow's few iterations).
"""
from __future__ import annotations

import os
import platform
import time
from datetime import date
from pathlib import Path

import click
import cv2
import numpy as np

from pipeline import media
from pipeline.faces.aligned_clip import frames_to_faces
from pipeline.faces.pictures import contact_sheet, flipbook, pack_picture_frames, picture_frames
from pipeline.faces.stability import (
    STRETCH,
    dense_flows,
    measure_input,
    measure_restored,
    pack_flows,
    small_grey,
)


def face_tracks(footage: Path, frames: int, clips: int) -> list[np.ndarray]:
    """TxSxSx3 aligned-size crops of the first `frames` frames of the first `clips` face clips."""
    paths = sorted(footage.glob("*.mp4"))[:clips]
    if not paths:
        raise click.UsageError(f"{footage}: no .mp4 face clips here; pass --footage with the shared footage")
    return [frames_to_faces(media.read_frames(path, 0, min(frames, media.probe(path).frame_count)))
            for path in paths]  # fmt: skip


def stand_in_restored(crops: np.ndarray, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 6, crops.shape)
    blurred = np.stack([cv2.GaussianBlur(crop, (0, 0), 1.5) for crop in crops])
    return np.clip(blurred + noise, 0, 255).astype(np.uint8)


def core_ms(work, repeat: int = 3) -> float:
    """Best process CPU time of `work()` over `repeat` runs, in ms (every thread's time counted)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best * 1e3


def measure(tracks: list[np.ndarray]) -> list[tuple[str, str, float, str]]:
    """(part, stage, core-ms per face-frame, what is carried or written) for each part, and last the
    flows alone (what the restore stage would pay to compute them again instead of receiving them)."""
    face_frames = sum(len(crops) for crops in tracks)
    restored = [stand_in_restored(crops, i) for i, crops in enumerate(tracks)]
    inputs = [measure_input(crops) for crops in tracks]
    triples = list(zip([flows for _, flows in inputs], tracks, restored, strict=True))
    after = [measure_restored(flows, crops, out) for flows, crops, out in triples]
    picked = [picture_frames(crops, out, 0, metrics["worst_stretch_start"], STRETCH)
              for crops, out, metrics in zip(tracks, restored, after, strict=True)]  # fmt: skip

    def per_frame(work) -> float:
        return core_ms(work) / face_frames

    flow_bytes = sum(len(pack_flows({0: flows})) for _, flows in inputs) / face_frames
    picked_bytes = sum(len(pack_picture_frames({0: frames})) for frames in picked)
    sheets = [contact_sheet(p["sheet_before"], p["sheet_after"], numbers=p["sheet_numbers"]) for p in picked]
    books = [flipbook(p["flip_before"], p["flip_after"], frame_rate=25) for p in picked]
    return [
        ("before-metrics and flows (`measure_input`)", "faces",
         per_frame(lambda: [measure_input(crops) for crops in tracks]),
         f"flows carried: {flow_bytes / 1024:.0f} kB per face-frame (a crop: 768 kB)"),
        ("after-metrics and PSNR (`measure_restored`)", "restore",
         per_frame(lambda: [measure_restored(flows, crops, out) for flows, crops, out in triples]),
         ""),
        ("picking and shrinking the pictures' frames (`picture_frames`)", "restore",
         per_frame(lambda: [picture_frames(crops, out, 0, 0, STRETCH) for _, crops, out in triples]),
         f"carried: {picked_bytes / len(picked) / 1e6:.1f} MB per track, whatever its length"),
        ("encoding the sheet (JPEG) and flipbook (WebP)", "encode",
         per_frame(lambda: [(contact_sheet(p["sheet_before"], p["sheet_after"], numbers=p["sheet_numbers"]),
                             flipbook(p["flip_before"], p["flip_after"], frame_rate=25)) for p in picked]),
         f"files: sheet {np.mean([len(s) for s in sheets]) / 1e3:.0f} kB, flipbook "
         f"{np.mean([len(b) for b in books]) / 1e3:.0f} kB per track"),
        ("(the flows alone: grey copies and DIS)", "-",
         per_frame(lambda: [dense_flows(small_grey(crops)) for crops in tracks]), "not done twice: carried"),
    ]  # fmt: skip


def markdown_report(rows, tracks: list[np.ndarray], command: str, load: float) -> str:
    frames = [len(crops) for crops in tracks]
    lines = [
        "### Temporal-stability metrics and pictures, core-ms per face-frame (issue 13)",
        "",
        f"- command: `{command}` (`make bench`)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (load {load:.1f} before), "
        f"OpenCV {cv2.__version__}; date: {date.today().isoformat()}",
        f"- tracks: {len(tracks)} real face clips of {min(frames)}-{max(frames)} frames (512x512 crops); "
        f"flow on 128x128 grey copies (DIS medium)",
        "",
        "| part | stage | core-ms per face-frame | carried / written |",
        "|---|---|---|---|",
    ]
    lines += [f"| {part} | {stage} | {ms:.2f} | {note} |" for part, stage, ms, note in rows]
    lines += ["", f"Total: {sum(ms for _, stage, ms, _ in rows if stage != '-'):.2f} core-ms per face-frame, "
              f"of which {sum(ms for _, stage, ms, _ in rows if stage == 'restore'):.2f} on the restore "
              f"stage's (GPU) actor."]  # fmt: skip
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--footage", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of face clips (*.mp4).")
@click.option("--frames", "frame_count", default=64, show_default=True, help="Frames per track.")
@click.option("--clips", default=3, show_default=True, help="Face clips (tracks) measured.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown file to write; the report is printed either way.")
def main(footage: Path, frame_count: int, clips: int, out: Path | None) -> None:
    """Time the stability metrics and the pictures of restored tracks, per face-frame."""
    command = (f"python -m pipeline.faces.bench_stability --footage {footage} --frames {frame_count} "
               f"--clips {clips}")
    load = os.getloadavg()[0]
    tracks = face_tracks(footage, frame_count, clips)
    report = markdown_report(measure(tracks), tracks, command, load)
    click.echo(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)


if __name__ == "__main__":
    main()
