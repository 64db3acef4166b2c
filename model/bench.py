"""CPU benchmark: upstream's schedule computed naively against the engine's, in one run.

    python -m model.bench [--model official] [--frames 16] [--out bench-results/model-cpu.md]

Each side runs in its own subprocess so that its peak resident memory is its own. Weights are synthetic
(`synthetic:0`): speed and equality do not depend on trained values. Frames come from
../shared/footage when present, else from a fixed random generator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from model.engine import RestorationEngine, window_schedule
from model.parity import psnr_db
from model.registry import build_model
from model.weights import fill_synthetic_

# upstream's schedule as upstream runs it (NCHW), the same in the engine's channels-last layout, the engine
SIDES = ("naive", "naive-channels-last", "engine")
FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage" / "Garry_Kasparov.labeled_faces-3.mp4"


def load_frames(count: int) -> tuple[np.ndarray, str]:
    """`count` BGR 512x512 frames of real footage when available."""
    if FOOTAGE.is_file():
        from pipeline.media import probe, read_frames

        clip = read_frames(FOOTAGE, 0, min(count, probe(FOOTAGE).frame_count))
        rgb = clip[np.arange(count) % len(clip)]
        return np.ascontiguousarray(rgb[..., ::-1]), f"{FOOTAGE.name} frames 0-{count - 1}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 512, 512, 3), dtype=np.uint8), "uniform random frames (seed 0)"


def flops_per_output_frame(model_name: str, frames: int) -> dict[str, float]:
    """FLOPs of the encoder per frame and of the rest per window, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(model_name)
        side = model.config.img_size
        window = model.config.frames
        with FlopCounterMode(display=False) as counter:
            latent = model.encode(torch.empty(1, 3, side, side))
        encoder = counter.get_total_flops()
        latents = latent[None].expand(1, window, *latent.shape[1:])
        with FlopCounterMode(display=False) as counter:
            model.restore_latents(latents)
        rest = counter.get_total_flops()
    naive_windows = len(window_schedule(frames, skip_padding=False))
    engine_windows = len(window_schedule(frames))
    return {
        "encoder_per_frame": encoder,
        "rest_per_window": rest,
        "naive": (naive_windows * (window * encoder + rest)) / frames,
        "engine": (frames * encoder + engine_windows * rest) / frames,
    }


def run_side(side: str, model_name: str, frames_path: Path, out_path: Path, batch_windows: int) -> dict:
    """Run one side in this process; returns timings and peak RSS."""
    torch.manual_seed(0)
    frames = np.load(frames_path)
    model = build_model(model_name)
    fill_synthetic_(model, seed=0)
    if side.startswith("naive"):
        layout = side == "naive-channels-last"
        engine = RestorationEngine(model, device="cpu", precision="fp32", channels_last=layout)
        run = engine.restore_naive
    else:
        engine = RestorationEngine(model, device="cpu", precision="fp32", batch_windows=batch_windows)
        run = engine.restore
    start = time.perf_counter()
    output = run(frames)
    seconds = time.perf_counter() - start
    np.save(out_path, output)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"seconds": seconds, "peak_rss_gb": peak_gb, "threads": torch.get_num_threads()}


def emit(lines: list[str], out: Path | None) -> None:
    """Print a markdown section, and keep it in `out` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def equality(a: np.ndarray, b: np.ndarray) -> str:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if not diff.any():
        return "bit-identical outputs"
    return (
        f"max abs difference {int(diff.max())} (uint8), identical values {np.mean(diff == 0) * 100:.2f}%, "
        f"PSNR {psnr_db(a, b):.1f} dB"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="official")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch-windows", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown section here")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--frames-path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:
        result = run_side(args.side, args.model, args.frames_path, args.output_path, args.batch_windows)
        print(json.dumps(result))
        return

    frames, source = load_frames(args.frames)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = Path(tmp) / "frames.npy"
        np.save(frames_path, frames)
        outputs = {}
        for side in SIDES:
            outputs[side] = Path(tmp) / f"{side}.npy"
            command = [
                sys.executable, "-m", "model.bench", "--side", side, "--model", args.model,
                "--frames-path", str(frames_path), "--output-path", str(outputs[side]),
                "--batch-windows", str(args.batch_windows),
            ]  # fmt: skip
            print(f"running {side} ...", file=sys.stderr, flush=True)
            completed = subprocess.run(command, check=True, capture_output=True, text=True)
            results[side] = json.loads(completed.stdout.strip().splitlines()[-1])
        naive, same_layout, engine = (np.load(outputs[side]) for side in SIDES)

    flops = flops_per_output_frame(args.model, args.frames)
    n = args.frames
    lines = [
        f"### DP-TempCoh on the CPU: upstream's schedule vs the engine ({args.model}, {n} frames)",
        "",
        f"- command: `python -m model.bench --model {args.model} --frames {n} "
        f"--batch-windows {args.batch_windows}` (`make bench`)",
        f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; date: {dt.date.today().isoformat()}",
        f"- input: {source}; weights: synthetic:0; precision fp32",
        "",
        "| schedule | seconds | frames/s | GFLOP per output frame | peak RSS (GB) |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "naive": "upstream's schedule, encoder per window, NCHW (as upstream runs)",
        "naive-channels-last": "upstream's schedule, encoder per window, channels-last",
        "engine": "engine: encoder once per frame, channels-last",
    }
    for side in SIDES:
        r = results[side]
        lines.append(
            f"| {labels[side]} | {r['seconds']:.1f} | {n / r['seconds']:.3f} | "
            f"{flops[side.split('-')[0]] / 1e9:.0f} | {r['peak_rss_gb']:.2f} |"
        )
    seconds = {side: results[side]["seconds"] for side in SIDES}
    lines += [
        "",
        f"- speed-up of the engine over upstream as run: **{seconds['naive'] / seconds['engine']:.2f}x**; "
        f"over upstream's schedule in the same layout (encoder reuse alone): "
        f"{seconds['naive-channels-last'] / seconds['engine']:.2f}x",
        f"- engine vs upstream's schedule in the same layout: {equality(same_layout, engine)}",
        f"- engine vs upstream as it runs (NCHW): {equality(naive, engine)}",
        f"- FLOPs: encoder {flops['encoder_per_frame'] / 1e9:.0f} GFLOP per frame, the rest "
        f"{flops['rest_per_window'] / 1e12:.2f} TFLOP per window",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
