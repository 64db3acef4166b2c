"""GPU benchmark: throughput and fraction of bf16 peak per precision and batch size, and the drift of
bf16/fp16 from fp32, against upstream's schedule in fp32 on the same card.

    python -m model.bench_gpu [--out bench-results/model-gpu.md]       (make bench-gpu)
    python -m model.bench_gpu --device cpu --model tiny --batches 1 2   (a smoke run of the code paths)

Weights are synthetic (`synthetic:0`). fp32 runs with TF32 off so that it is a true fp32 reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import torch

from model.bench import emit, flops_per_output_frame, load_frames
from model.engine import RestorationEngine
from model.parity import psnr_db
from model.registry import build_model
from model.weights import fill_synthetic_

# Dense bf16 tensor-core peaks (FLOP/s) from the vendor's data sheets.
BF16_PEAKS = {"H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12, "H20": 148e12, "A100": 312e12}


def bf16_peak(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAKS.items():  # longest, most specific names first
        if key in name:
            return peak
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - start, result


def window_outputs(model, frames: np.ndarray, device: torch.device, precision: str):
    """One window through the network: (uint8-scaled float frames, tokens)."""
    engine = RestorationEngine(model, device=device, precision=precision)
    with torch.inference_mode(), engine._autocast():
        out = model(engine.to_input(frames[:8])[None])
    return out.frames.float().clamp(-1, 1).cpu(), out.tokens.cpu()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="official")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="windows per forward")
    parser.add_argument("--clip-frames", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak when the card is unknown")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --model tiny for a smoke run")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    model = build_model(args.model)
    fill_synthetic_(model, seed=0)
    frames, source = load_frames(args.clip_frames)
    flops = flops_per_output_frame(args.model, args.clip_frames)
    peak = bf16_peak(device, args.peak_tflops)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"

    rows = []
    baseline_engine = RestorationEngine(model, device=device, precision="fp32", channels_last=False)
    baseline_engine.restore_naive(frames[:8])  # warm-up
    seconds, _ = timed(device, lambda: baseline_engine.restore_naive(frames))
    rows.append(
        ("upstream schedule", "fp32", 1, len(frames) / seconds, flops["naive"] * len(frames) / seconds)
    )

    for precision in precisions:
        for batch in args.batches:
            engine = RestorationEngine(model, device=device, precision=precision, batch_windows=batch)
            clips = [frames] * batch
            try:
                engine.restore_many([frames[:8]] * batch)  # warm-up, autotuning
                seconds, _ = timed(device, lambda engine=engine, clips=clips: engine.restore_many(clips))
            except torch.OutOfMemoryError:
                rows.append(("engine", precision, batch, None, None))
                torch.cuda.empty_cache()
                continue
            total = len(frames) * batch
            rows.append(("engine", precision, batch, total / seconds, flops["engine"] * total / seconds))

    reference_frames, reference_tokens = window_outputs(model, frames, device, "fp32")
    drift = []
    for precision in precisions[1:]:
        out, tokens = window_outputs(model, frames, device, precision)
        to_uint8 = lambda t: ((t + 1) / 2 * 255).numpy().astype(np.uint8)  # noqa: E731
        drift.append(
            (precision, psnr_db(to_uint8(reference_frames), to_uint8(out)),
             float((tokens == reference_tokens).float().mean()))
        )  # fmt: skip

    lines = [
        f"### DP-TempCoh on {card}: precisions and batch sizes ({args.model})",
        "",
        f"- command: `python -m model.bench_gpu --model {args.model} --device {args.device} "
        f"--batches {' '.join(map(str, args.batches))}` (`make bench-gpu`); "
        f"date: {dt.date.today().isoformat()}",
        f"- input: {source}, clips of {args.clip_frames} frames; weights synthetic:0; TF32 off; "
        f"torch {torch.__version__}",
        f"- bf16 peak used: {peak / 1e12:.0f} TFLOP/s" if peak else "- bf16 peak: unknown for this device",
        "",
        "| schedule | precision | windows per pass | frames/s | TFLOP/s | fraction of bf16 peak |",
        "|---|---|---|---|---|---|",
    ]
    for schedule, precision, batch, fps, achieved in rows:
        if fps is None:
            lines.append(f"| {schedule} | {precision} | {batch} | out of memory | | |")
            continue
        fraction = f"{achieved / peak * 100:.1f}%" if peak else "n/a"
        lines.append(
            f"| {schedule} | {precision} | {batch} | {fps:.2f} | {achieved / 1e12:.1f} | {fraction} |"
        )
    lines += ["", "| precision | PSNR vs fp32 (dB) | token agreement vs fp32 |", "|---|---|---|"]
    lines += [f"| {p} | {db:.1f} | {agreement:.4f} |" for p, db, agreement in drift]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
