"""`make check-gpu`: what a GPU machine must confirm, in one script of a few minutes (BENCHMARKS.md tables).

    python -m pipeline.check_gpu --footage ../shared/footage \
        --weights ../shared/weights/retinaface_mobile0.25.pth --out bench-results/check-gpu.md

1. the network (model.bench_gpu): fp32 against bf16, windows per pass, fraction of the bf16 peak, and
   bf16's drift from fp32 (goal >= 35 dB);
2. detection on the GPU (float16, batched, decoding and NMS on the device) against the CPU in fp32 on
   the shared footage (boxes IoU >= 0.95, landmarks within 1 px), and each detector's speed on both;
3. a smoke run of the demo archive with detection and restoration on the GPU (official network,
   synthetic weights), through `run_archive` and Ray;
4. a real CUDA out-of-memory back-off: the network's memory capped (a fraction of the card) and more
   windows per pass asked than fit, the restorer halving them until a pass fits;
5. NVENC on this card: an encode with h264_nvenc, or the refusal a run would give.

Each step reports PASS, FAIL (with why) or its figures; one that fails does not stop the others. With
`--device cpu --quick` the code paths run on a CPU (tiny network), to try the script before a GPU session.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np


def step(lines: list[str], title: str):
    """A runner of one step: appends its title and lines, or FAIL with the error's last lines."""

    def run(function, *args):
        lines.extend(["", f"#### {title}", ""])
        started = time.perf_counter()
        try:
            lines.extend(function(*args))
        except Exception as error:  # noqa: BLE001 - a failed step is reported, the others still run
            trace = traceback.format_exc(limit=4).strip().splitlines()[-6:]
            lines.extend([f"- **FAIL**: {type(error).__name__}: {error}", "", "```", *trace, "```"])
        lines.append(f"- ({time.perf_counter() - started:.0f} s)")

    return run


def network(device: str, quick: bool) -> list[str]:
    from model import bench_gpu

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model.md"
        model = ["--model", "tiny"] if quick else []
        bench_gpu.main([*model, "--device", device, "--batches", "1", "4", "8", "--clip-frames", "16",
                        "--out", str(out)])  # fmt: skip
        text = out.read_text().splitlines()
    drift = [line for line in text if line.startswith("| bf16 |")]
    verdict = []
    if drift:
        decibels = float(drift[0].split("|")[2])
        verdict = [
            f"- bf16 drift from fp32: {decibels:.1f} dB: **{'PASS' if decibels >= 35 else 'FAIL'}** (>= 35)"
        ]
    return [line for line in text if not line.startswith("### ")] + verdict


def detection(device: str, footage: Path, weights: Path) -> list[str]:
    import torch

    from pipeline.faces.detect import FaceDetector
    from pipeline.media import read_frames

    clips = [read_frames(path, 0, 16) for path in sorted(footage.glob("*.mp4"))[:3]]
    frames = np.concatenate(clips, axis=2)  # three faces a frame, 1536 x 512
    reference = FaceDetector("retinaface_mobile0.25", weights, max_side=640, device="cpu").detect(frames)
    on_device = FaceDetector("retinaface_mobile0.25", weights, max_side=640, device=device)
    found = on_device.detect(frames)
    worst_iou, worst_px, missing = 1.0, 0.0, 0
    for ours, theirs in zip(found, reference, strict=True):
        missing += abs(len(ours) - len(theirs))
        for face in theirs:
            best = max(ours, key=lambda other: _iou(other.box, face.box), default=None)
            if best is None:
                continue
            worst_iou = min(worst_iou, _iou(best.box, face.box))
            worst_px = max(worst_px, float(np.abs(best.landmarks - face.landmarks).max()))
    ok = missing == 0 and worst_iou >= 0.95 and worst_px <= 1.0
    lines = [
        f"- {device} ({'float16' if on_device.half else 'float32'}) against the CPU in float32, "
        f"{len(frames)} frames of 1536x512 with three faces: worst box IoU {worst_iou:.4f}, worst landmark "
        f"{worst_px:.2f} px, {missing} faces found by one and not the other: **{'PASS' if ok else 'FAIL'}**",
        "",
        "| detector (longest side 640) | device | ms per frame (batches of 32, wall) |",
        "|---|---|---|",
    ]
    big = np.concatenate([frames] * 2)  # 96 frames
    for name, path in (("retinaface_mobile0.25", weights), ("retinaface_resnet50", None)):
        for where in dict.fromkeys((device, "cpu")):
            detector = FaceDetector(name, path, max_side=640, batch_size=32, device=where,
                                    random_weights=path is None)  # fmt: skip
            sample = big if where != "cpu" else big[:32]
            with np.errstate(over="ignore", invalid="ignore"):
                detector.detect(sample[:32])  # warm-up
                if detector.device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                detector.detect(sample)
                if detector.device.type == "cuda":
                    torch.cuda.synchronize()
            lines.append(f"| {name} | {where} | {(time.perf_counter() - started) * 1000 / len(sample):.2f} |")
    return lines


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def smoke_run(footage: Path, weights: Path, quick: bool, work: Path) -> list[str]:
    import ray

    from pipeline.cluster import connect
    from pipeline.config import load_settings
    from pipeline.demo import build_demo_archive
    from pipeline.manifest import read_manifest
    from pipeline.run import run_archive

    manifest = read_manifest(build_demo_archive(footage, work / "demo"))
    network = ["model.name=tiny"] if quick else ["model.name=official"]
    detector = ["faces.detector=retinaface_mobile0.25", f"faces.detector_weights={weights}"]
    settings = load_settings(None, [*network, "model.weights=synthetic:0", *detector])
    plan = connect(settings, None)
    said: list[str] = []
    started = time.perf_counter()
    summary = run_archive(manifest.to_dict("records"), work / "out", settings, plan=plan, report=said.append)
    seconds = time.perf_counter() - started
    ray.shutdown()
    done = [video for video in summary.videos if video["status"] == "done"]
    frames = sum(video["frames_out"] for video in summary.videos)
    ok = len(done) == len(summary.videos) and plan.restore_on_gpu and plan.detect_on_gpu
    lines = [
        f"- plan: {plan.gpus} GPU(s), restoration on GPU: {plan.restore_on_gpu}, detection on GPU: "
        f"{plan.detect_on_gpu}; {len(done)}/{len(summary.videos)} videos done, {frames} frames in "
        f"{seconds:.0f} s (Ray start and model loading included): **{'PASS' if ok else 'FAIL'}**",
    ]
    lines += [f"  - {line}" for line in said if "face detection on" in line or ": failed" in line]
    return lines


def out_of_memory(device: str, quick: bool) -> list[str]:
    import torch

    from pipeline.config import load_settings
    from pipeline.restorer import Restorer

    if device == "cpu":
        return ["- skipped on the CPU: no CUDA memory to cap"]
    total = torch.cuda.get_device_properties(0).total_memory
    cap_gb = 6.0
    torch.cuda.set_per_process_memory_fraction(cap_gb * 1024**3 / total)
    name = "tiny" if quick else "official"
    overrides = [f"model.name={name}", "model.weights=synthetic:0", "model.batch_windows=64"]
    settings = load_settings(None, overrides)
    restorer = Restorer(settings, device="cuda", precision="bf16")
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (8, 512, 512, 3), np.uint8) for _ in range(64)]
    started = time.perf_counter()
    try:
        restored = restorer.restore_backing_off(clips)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    kept = restorer.engine.batch_windows
    ok = len(restored) == 64 and kept < 64
    return [
        f"- memory capped at {cap_gb:g} GB of {total / 1024**3:.0f} GB, 64 windows per pass asked: the "
        f"restorer backed off to {kept} and restored all 64 clips in {time.perf_counter() - started:.0f} s: "
        f"**{'PASS' if ok else 'FAIL'}**"
    ]


def nvenc() -> list[str]:
    from pipeline.config import EncodeSettings
    from pipeline.encoders import EncoderError, check_encoder

    lines = []
    for codec in ("h264_nvenc", "hevc_nvenc"):
        try:
            check_encoder(EncodeSettings(codec=codec, preset="p4"))
            lines.append(f"- {codec}: encodes on this machine")
        except EncoderError as error:
            lines.append(f"- {codec}: refused: {error} (expected on H100/H200, which have no NVENC)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path("../shared/footage"))
    parser.add_argument("--weights", type=Path, default=Path("../shared/weights/retinaface_mobile0.25.pth"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="the tiny network (a try of the code paths)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from model.bench import emit

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --quick to try the code paths")
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    lines = [
        f"### `make check-gpu` on {card}",
        "",
        f"- command: `python -m pipeline.check_gpu{' --quick' if args.quick else ''}`; date: "
        f"{dt.date.today().isoformat()}; torch {torch.__version__}; {os.cpu_count()} CPU cores",
    ]
    with tempfile.TemporaryDirectory(prefix="dpt-check-gpu-") as folder:
        work = args.work or Path(folder)
        step(lines, "1. The network: precisions and windows per pass")(network, args.device, args.quick)
        step(lines, "2. Detection on the device against the CPU")(
            detection, args.device, args.footage, args.weights
        )
        step(lines, "3. A smoke run with detection and restoration on the GPU")(
            smoke_run, args.footage, args.weights, args.quick, work
        )
        step(lines, "4. Out of memory: the restorer backs off")(out_of_memory, args.device, args.quick)
        step(lines, "5. NVENC")(nvenc)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
