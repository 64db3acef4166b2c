"""The cost model: CPU core-milliseconds per source frame of each CPU stage, and what a cluster can do.

The figures are `make bench-cost`'s (BENCHMARKS.md, "The CPU side per source frame"), measured at 1080p
and scaled here by the frame's pixels; the detector's by the pixels it reads (its longest side capped at
`faces.detect_max_side`). The cluster plan shares the CPUs out between the faces and encode pools in
proportion to these costs, and `dpt-batch run --dry-run` prints the frames per second a cluster would
reach and the stage that limits it.

A GPU's restoration rate (face-frames a second) comes from `make bench-gpu`'s table where it has been
run, otherwise from the FLOP estimate, and is labelled as such.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import NVENC_CODECS

REFERENCE_PIXELS = 1920 * 1080
# core-ms per 1080p source frame, one whole `make bench-cost` run (BENCHMARKS.md, re-measured 2026-12-07,
# 2 cores, every stage warm and with one thread, as in an actor of one CPU; all figures from that run, so
# their shares hold together even where the machine's speed moves from day to day)
PROBE_MS = 5.5  # scene analysis: a decode straight to 256 wide
FACES_MS = 11.5  # the faces stage less detection: full decode, tracking, smoothing, alignment, packing
SHRINK_MS = 1.0  # the decoder's shrunk copy for the detector (the faces actor's part with detection on a GPU)
# the encode actor less the encoder: decode, paste-back, frames to ffmpeg (paste + encode less the plain
# re-encode's encoder: 10.9 at veryfast, 11.0 at ultrafast, 12.3 at medium)
DECODE_PASTE_MS = 11.0
ASSEMBLE_MS = 0.2
# the encoder alone (libx264 at CRF 18, 1080p) by preset; slow and beyond: extrapolated from medium by
# the ratios libx264's presets usually keep, not measured
ENCODER_MS = {"ultrafast": 8.4, "superfast": 17.5, "veryfast": 28.1, "faster": 47.4, "fast": 60.3,
              "medium": 65.1, "slow": 105, "slower": 210, "veryslow": 415, "placebo": 1200}  # fmt: skip
X265_FACTOR = 3.0  # libx265 against libx264 at the same preset (rough, not measured)
NVENC_MS = 4.0  # NVENC: the CPU side of feeding the hardware encoder (not measured: no such GPU here)
# each detector's network and decoding on the CPU at a 640 longest side, 1080p frames, in an actor of one
# CPU: mobile0.25 as the faces stage measured it; ResNet-50 (random weights, the same arithmetic as the
# release weights) scaled from it by the two networks' ratio timed alone (741.7 against 26.9 core-ms)
DETECTOR_MS_AT_640 = {"retinaface_mobile0.25": 19.7, "retinaface_resnet50": 543.0}
# DP-TempCoh with encoder reuse, per restored face-frame, and an H100's dense bf16 peak (issue 12)
TFLOP_PER_FACE_FRAME = 1.4
H100_BF16_TFLOPS = 989.0
ASSUMED_MFU = 0.4
CPU_RESTORE_FACE_FRAMES_S = 0.05  # the official network on one 2-core CPU actor in fp32 (80 s a window)


@dataclass(frozen=True)
class FrameCosts:
    """Core-ms per source frame of each CPU pool: probe tasks, faces actors, encode actors."""

    probe: float
    faces: float
    encode: float

    @property
    def total(self) -> float:
        return self.probe + self.faces + self.encode


def frame_costs(settings, width: int = 1920, height: int = 1080, detect_on_gpu: bool = False) -> FrameCosts:
    """The CPU pools' core-ms per source frame of a `width` x `height` video under `settings`."""
    scale = width * height / REFERENCE_PIXELS
    faces = settings.faces
    if faces.mode == "aligned":
        faces_ms = FACES_MS * scale
    else:
        longest, shortest = max(width, height), min(width, height)
        side = longest if faces.detect_max_side <= 0 else min(longest, faces.detect_max_side)
        # the detector's pixels against a 640 x 360 input
        detect_scale = (side / 640) ** 2 * (shortest / longest) / (360 / 640)
        detection = 0.0
        if not detect_on_gpu:
            detection = DETECTOR_MS_AT_640[faces.detector] * detect_scale / faces.detect_every
        faces_ms = FACES_MS * scale + SHRINK_MS * scale + detection
    encode = settings.encode
    if encode.codec in NVENC_CODECS:
        encoder = NVENC_MS
    else:
        encoder = ENCODER_MS[encode.preset] * (X265_FACTOR if encode.codec == "libx265" else 1.0)
    encode_ms = (DECODE_PASTE_MS + encoder + ASSEMBLE_MS) * scale
    return FrameCosts(probe=PROBE_MS * scale, faces=faces_ms, encode=encode_ms)


def gpu_restoration_rate(results: Path = Path("bench-results/model-gpu.md")) -> tuple[float, str]:
    """Face-frames a second one GPU restores, and where the figure comes from: the best bf16 row of
    `make bench-gpu`'s table when it has been run here (official network), otherwise the FLOP estimate."""
    table = results.read_text() if results.is_file() else ""
    if "(official)" in table:
        rows = re.findall(r"^\| engine \| bf16 \| \d+ \| ([0-9.]+) \|", table, flags=re.MULTILINE)
        if rows:
            return max(map(float, rows)), f"measured by `make bench-gpu` ({results})"
    rate = H100_BF16_TFLOPS * ASSUMED_MFU / TFLOP_PER_FACE_FRAME
    return rate, (
        f"an estimate, not measured: {TFLOP_PER_FACE_FRAME} TFLOP per face-frame at {ASSUMED_MFU:.0%} of an "
        f"H100's {H100_BF16_TFLOPS:g} bf16 TFLOPS"
    )


@dataclass(frozen=True)
class Throughput:
    """Source frames a second each part of a cluster can take, the least of them, and which it is."""

    by_stage: dict
    frames_per_s: float
    limit: str
    rate_source: str


def throughput(plan, costs: FrameCosts, face_share: float, tiny: bool = False) -> Throughput:
    """What `plan`'s cluster can do on frames costing `costs`, with `face_share` restored face-frames per
    source frame: the CPU stages share the CPUs that detector and CPU restoration actors leave, each
    pool is capped by its actors (a core each at most), and restoration by the GPUs' rate (or the CPU
    actors'; not counted for the `tiny` test network)."""

    def count(number: int, thing: str) -> str:
        return f"{number} {thing}{'s' * (number != 1)}"

    restorers = plan.actors("restore")[1]
    taken = (plan.gpus if plan.detect_on_gpu else 0) + (0 if plan.restore_on_gpu else restorers)
    cores = max(plan.cpus - taken, 0.0)
    by_stage = {"CPU stages together": cores * 1000 / costs.total}
    for stage, cost in (("faces", costs.faces), ("encode", costs.encode)):
        actors = plan.actors(stage)[1]
        cores_of_pool = actors * min(1.0, plan.cpus_per_actor)
        by_stage[f"{stage} pool ({count(actors, 'actor')})"] = cores_of_pool * 1000 / cost
    if tiny:
        source = "not counted: the tiny test network"
    else:
        if plan.restore_on_gpu:
            rate, source = gpu_restoration_rate()
            gpus = max(plan.gpus, 1)
            name, per_s = f"restoration ({count(gpus, 'GPU')})", gpus * rate
        else:
            source = "the official network in fp32 on CPU actors (about 80 s per 8-frame window)"
            name = f"restoration ({count(restorers, 'CPU actor')})"
            per_s = restorers * CPU_RESTORE_FACE_FRAMES_S
        by_stage[name] = per_s / face_share if face_share else float("inf")
    limit = min(by_stage, key=by_stage.get)
    return Throughput(by_stage, by_stage[limit], limit, source)


def format_throughput(
    plan, costs: FrameCosts, face_share: float, size: str, tiny: bool = False
) -> list[str]:
    """The dry run's lines on speed: each stage's frames/s on this cluster and the one that limits it."""
    result = throughput(plan, costs, face_share, tiny)
    lines = [
        f"on this cluster: {plan.cpus:g} CPUs, {plan.gpus} GPUs, detection on "
        f"{'the GPUs' if plan.detect_on_gpu else 'the CPUs'}"
        + (f", {plan.actor_memory / 1024**3:g} GiB of memory per CPU actor" if plan.actor_memory else "")
        + f"; {size}, {face_share:.2f} face-frames per "
        f"frame; CPU core-ms per frame: probe {costs.probe:.1f}, faces {costs.faces:.1f}, "
        f"encode {costs.encode:.1f}"
    ]
    for stage, per_s in sorted(result.by_stage.items(), key=lambda item: item[1]):
        lines.append(f"  {stage:<36} {per_s:>10.3g} frames/s")
    lines.append(
        f"expected about {result.frames_per_s:.3g} frames/s, limited by {result.limit} "
        f"(restoration: {result.rate_source}; stage costs: `make bench-cost`)"
    )
    return lines
