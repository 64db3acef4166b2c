"""Moving a clip between nodes: what each way of handing a clip's data to the next stage costs.

    python -m pipeline.bench_transfer --footage ../shared/footage --weights W --out bench-results/transfer.md

On a 1080p clip made from the shared footage (one face, scaled up), per frame: decoding it again from
the source (what a node does instead of receiving frames), the bytes a decoded frame would be on the
wire against the source's compressed bytes, finding and aligning the faces again (what a node would do
instead of receiving crops), and packing the crops and moving them through Ray's object store (put on
one worker, got and unpacked on another, both on this one machine: no network). Network times are
computed from the byte counts at 10 Gbit/s, labelled as such.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import tempfile
import time
from pathlib import Path

FOOTAGE = "Lou_Lang.labeled_faces-5.mp4"
NETWORK_BYTES_PER_S = 10e9 / 8


def make_clip(footage: Path, folder: Path, frames: int) -> Path:
    from pipeline.media import ffmpeg_exe

    clip = folder / "clip_1080p.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(footage / FOOTAGE),
         "-vf", "scale=1920:1080", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "medium",
         "-crf", "18", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )  # fmt: skip
    return clip


def best_of(repeat: int, work) -> tuple[float, object]:
    """The shortest of `repeat` timings of `work()` and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(footage: Path, weights: Path, frames: int) -> dict:
    import ray

    from pipeline.artifacts import pack_faces, unpack_faces
    from pipeline.config import load_settings
    from pipeline.media import read_frames
    from pipeline.restorer import Restorer

    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    restorer = Restorer(settings, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(footage, Path(folder), frames)
        source_bytes = clip.stat().st_size
        decode_s, decoded = best_of(3, lambda: read_frames(clip, 0, frames))
        restorer.detector  # noqa: B018 (loaded before timing)
        faces_s, found = best_of(1, lambda: restorer.find_faces(decoded))
    face_frames = sum(len(track.crops) for track in found.aligned.values())
    if not face_frames:
        raise SystemExit("no face was found in the benchmark clip")
    pack_s, packed = best_of(3, lambda: pack_faces(found.aligned))
    unpack_s, _ = best_of(3, lambda: unpack_faces(packed))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=1)
        def produce(data: bytes) -> bytes:
            return bytes(data)  # a copy made in another worker, as a stage's output is

        @ray.remote(num_cpus=1)
        def consume(data: bytes) -> int:
            return len(unpack_faces(data))

        produced = ray.put(packed)
        ray.get(consume.remote(produce.remote(produced)))  # warm the workers
        store_s, _ = best_of(3, lambda: ray.get(consume.remote(produce.remote(produced))))
    finally:
        ray.shutdown()
    frame_bytes = decoded[0].nbytes
    return {
        "frames": frames, "face_frames": face_frames, "source_bytes_per_frame": source_bytes / frames,
        "frame_bytes": frame_bytes, "crop_bytes_per_face_frame": len(packed) / face_frames,
        "decode_ms": 1e3 * decode_s / frames, "faces_ms": 1e3 * faces_s / frames,
        "pack_ms": 1e3 * (pack_s + unpack_s) / face_frames, "store_ms": 1e3 * store_s / face_frames,
        "detector": f"{settings.faces.detector} at detect_max_side {settings.faces.detect_max_side}",
    }  # fmt: skip


def table(m: dict) -> str:
    net = 1e3 / NETWORK_BYTES_PER_S
    frame_mb, crop_mb = m["frame_bytes"] / 1e6, m["crop_bytes_per_face_frame"] / 1e6
    rows = [
        ("frames: decode again from the node's copy of the source (chosen)", f"{m['decode_ms']:.1f}",
         f"{m['source_bytes_per_frame'] / 1e3:.0f} kB once per node (the source copy)"),
        ("frames: move decoded frames between nodes (network, computed)", f"{m['frame_bytes'] * net:.1f}",
         f"{frame_mb:.2f} MB per frame per stage"),
        ("crops: find and align the faces again (per frame)", f"{m['faces_ms']:.1f}", "none"),
        ("crops: pack + unpack (per face-frame)", f"{m['pack_ms']:.2f}", f"{crop_mb:.2f} MB"),
        ("crops: through Ray's object store, worker to worker, this machine (chosen)",
         f"{m['store_ms']:.2f}", f"{crop_mb:.2f} MB"),
        ("crops: over the network (computed)", f"{m['crop_bytes_per_face_frame'] * net:.2f}",
         f"{crop_mb:.2f} MB"),
    ]  # fmt: skip
    lines = ["| way | ms per frame | bytes moved |", "|---|---|---|"]
    lines += [f"| {way} | {ms} | {moved} |" for way, ms, moved in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path("../shared/footage"))
    parser.add_argument("--weights", type=Path, default=Path("../shared/weights/retinaface_mobile0.25.pth"))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    m = measure(args.footage, args.weights, args.frames)
    text = "\n".join([
        "### Moving a clip between nodes (1080p, one face)",
        "",
        f"- command: `python -m pipeline.bench_transfer --frames {args.frames}` (`make bench`)",
        f"- machine: {platform.machine()}, {__import__('os').cpu_count()} cores; date: {dt.date.today()}",
        f"- clip: {FOOTAGE} scaled to 1920x1080, {m['frames']} frames, {m['face_frames']} face-frames; "
        f"configs/smoke.yaml: {m['detector']}",
        "",
        table(m),
        "",
        f"- frames: decoding one again costs {m['decode_ms']:.1f} CPU-ms; moving it instead would put "
        f"{m['frame_bytes'] / 1e6:.1f} MB into the object store and on the wire for each stage that needs it "
        f"({m['frame_bytes'] / m['source_bytes_per_frame']:.0f}x the source's compressed bytes): frames are "
        "decoded where they are needed",
        f"- crops: finding and aligning the faces again costs {m['faces_ms'] / max(m['store_ms'], 1e-9):.0f}x"
        " "
        "moving them through the object store: crops are moved, never recomputed",
    ])  # fmt: skip
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
