"""What the CPU side costs per source frame (`make bench-cost`): every CPU stage, the encoder presets, and
the cores one GPU needs.

    python -m pipeline.bench_cost --footage ../shared/footage \
        --weights ../shared/weights/retinaface_mobile0.25.pth --out bench-results/cost-cpu.md

Films: 720p and 1080p at 23.976 fps with sound, five shots (four with faces, one test pattern), made from
the shared footage. Costs are CPU time (user + system of every thread and child process, in
core-milliseconds per source frame), not wall time, so they hold on any number of cores:

1. encoder presets at 1080p: a plain `ffmpeg` re-encode of the film per libx264 preset (decoding
   counted apart), with PSNR and VMAF of the result against the source;
2. the stages, called one after another in this process (pipeline.stages, as the actors call them),
   with production settings except the tiny network and RetinaFace mobile0.25 (what runs offline):
   probe and scenes, faces (detection apart from decoding, tracking and alignment), paste + encode, and
   assembly; paste + encode again at each `--compare-presets` preset (medium: the issue's baseline), set
   against a plain re-encode at that preset. The detector's own cost is measured for both detectors
   (ResNet-50 with random weights: the same arithmetic as the release weights) so that "detection off
   the CPU" is the faces stage without it, plus the shrinking a faces actor still does;
3. the whole run through `dpt-batch run`'s code in a fresh embedded Ray, its CPU time read from a
   cgroup (cpuacct) that holds every process of the run: what exceeds the stages' own sum is Ray's
   start-up and per-task overhead;
4. the cores one GPU needs at its restoration rate: measured by `make bench-gpu` when its table is in
   bench-results/, otherwise the FLOP estimate (labelled so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

from pipeline.costs import gpu_restoration_rate
from pipeline.demo import DemoFilm, Face, Shot, render_film
from pipeline.media import ffmpeg_exe

RATE = Fraction(24000, 1001)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def cost_film(width: int, height: int, shot_frames: int) -> DemoFilm:
    """Five shots: four with faces (one, two, one, one) on moving backgrounds, one test pattern."""
    big, small = height * 2 // 3 // 2 * 2, height // 2 // 2 * 2
    francis, lou, lesia, felicity = (
        "Francis_Collins.labeled_faces-3.mp4",
        "Lou_Lang.labeled_faces-5.mp4",
        "Lesia_Burlak.labeled_faces-0.mp4",
        "Felicity_Huffman.labeled_faces-5.mp4",
    )
    shots = (
        Shot(shot_frames, "gradients=speed=0.02", (Face(francis, width // 8, height // 6, big),)),
        Shot(
            shot_frames,
            "testsrc2",
            (Face(lou, width // 20, height // 5, small), Face(lesia, width // 2, height // 5, small)),
        ),
        Shot(shot_frames, "testsrc2"),
        Shot(
            shot_frames,
            "gradients=speed=0.03:c0=0x302010:c1=0xa09070",
            (Face(felicity, width // 2, 40, big),),
        ),
        Shot(shot_frames, "gradients=speed=0.01", (Face(francis, width // 3, height // 7, big),)),
    )
    return DemoFilm(f"cost_{height}p", f"{height}p cost film", width, height, RATE, True, shots)


# -- CPU time ---------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its children that have ended."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime


@contextmanager
def measured(into: dict, key: str):
    """Add the block's CPU seconds to into[key]."""
    start = cpu_seconds()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + cpu_seconds() - start


def run_cpu(command: list[str]) -> tuple[float, str]:
    """Run a command; its CPU seconds (user + system, threads included) and its stderr."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        text = errors.read().decode(errors="replace")
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {text[-600:]}")
    return usage.ru_utime + usage.ru_stime, text


# -- 1. encoder presets -----------------------------------------------------------------------------


def encoder_table(film: Path, frames: int, work: Path, presets=PRESETS, crf: int = 18) -> list[dict]:
    """Per preset: encode core-ms per frame (the re-encode less decoding), size and quality."""
    ffmpeg = ffmpeg_exe()
    decode_s, _ = run_cpu([ffmpeg, "-hide_banner", "-nostdin", "-i", str(film), "-an", "-f", "null", "-"])
    rows = []
    for preset in presets:
        out = work / f"preset_{preset}.mp4"
        total_s, _ = run_cpu(
            [
                ffmpeg,
                "-hide_banner",
                "-nostdin",
                "-y",
                "-i",
                str(film),
                "-an",
                "-c:v",
                "libx264",
                "-preset",
                preset,
                "-crf",
                str(crf),
                "-pix_fmt",
                "yuv420p",
                str(out),
            ]
        )
        psnr, vmaf = quality(out, film)
        rows.append(
            {
                "preset": preset,
                "reencode_ms": total_s * 1000 / frames,
                "encode_ms": (total_s - decode_s) * 1000 / frames,
                "decode_ms": decode_s * 1000 / frames,
                "kbps": out.stat().st_size * 8 / 1000 / float(frames / RATE),
                "psnr": psnr,
                "vmaf": vmaf,
            }
        )
    return rows


def quality(encoded: Path, source: Path) -> tuple[float, float]:
    """PSNR (dB, all planes) and VMAF (every 4th frame) of `encoded` against `source`."""
    graph = "[0:v]split[a0][a1];[1:v]split[b0][b1];[a0][b0]psnr;[a1][b1]libvmaf=n_subsample=4:n_threads=2"
    _, log = run_cpu(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-i",
            str(encoded),
            "-i",
            str(source),
            "-lavfi",
            graph,
            "-f",
            "null",
            "-",
        ]
    )
    psnr = re.search(r"PSNR .*average:([0-9.]+|inf)", log)
    vmaf = re.search(r"VMAF score: ([0-9.]+)", log)
    return float(psnr.group(1)) if psnr else float("nan"), float(vmaf.group(1)) if vmaf else float("nan")


# -- 2. the stages, in this process -----------------------------------------------------------------


def stage_costs(
    film: Path, settings, work: Path, compare: dict | None = None, network: bool = False
) -> dict:
    """CPU seconds of each stage over the film, called as the actors call them (with the threads an
    actor of one CPU has, and malloc keeping freed memory: pipeline.execute.keep_freed_memory), with
    the detector's network and the shrinking before it measured apart.
    Keys: probe, faces, detect_net, detect_shrink, restore, encode, assemble; and frames, face_frames.

    Each actor's stage is measured warm, as it runs at scale: it first does the film's first clip once
    (the first calls into torch, OpenCV and libav; the arrays it keeps between clips, pipeline.scratch,
    first touched), and what that first clip cost more than the same clip warm is `NAME_first` (seconds,
    once per actor; the detector's network and shrinking are counted only warm).
    `compare`: preset -> settings whose paste + encode stage is also measured on the same restored clips
    (key `encode@PRESET`).

    Restoration gives back the crops it is given unless `network`: the encoder then sees faces like the
    source's, as it would a real network's. The tiny network's synthetic weights paint the faces with
    noise that costs libx264 several times the bits and the time (at medium more than twice the
    encoder's time for the whole film), which no real restoration would."""
    import torch

    from pipeline.assemble import assemble_video
    from pipeline.context import make_context
    from pipeline.execute import as_worker, use_cpus
    from pipeline.faces import detect
    from pipeline.records import VideoTask
    from pipeline.scratch import keep_scratch, scratch_kept
    from pipeline.stages import DetectFaces, PasteAndEncode, ProbeVideo, RestoreFaces

    threads, scratch = torch.get_num_threads(), scratch_kept()
    torch.set_num_threads(1)  # as Ray's OMP_NUM_THREADS=1 does in an actor of one CPU
    # OpenCV's threads, malloc and pipeline.scratch as in an actor of one CPU (malloc's for good)
    as_worker(1)
    costs: dict = {}
    context = make_context(settings, work_root=work / "work")
    video = VideoTask(film.stem, str(film))
    detector, shrink = detect.run_retinaface, detect.to_detector_input
    detect.run_retinaface = _timed(detector, costs, "detect_net")
    detect.to_detector_input = _timed(shrink, costs, "detect_shrink")
    try:
        stages = {
            name: cls(context)
            for name, cls in (("faces", DetectFaces), ("restore", RestoreFaces), ("encode", PasteAndEncode))
        }
        for stage in stages.values():
            stage.setup()  # models load once per actor: not a per-frame cost
        if not network:
            stages["restore"].restorer.restore_backing_off = lambda clips: [clip.copy() for clip in clips]
        with measured(costs, "probe"):
            clips = ProbeVideo(context).process([video])
        for name, stage in stages.items():
            if name == "encode":
                for preset, other in (compare or {}).items():
                    encoder = PasteAndEncode(make_context(other, work_root=work / f"work-{preset}"))
                    encoder.setup()
                    measured_warm(encoder, clips, costs, f"encode@{preset}")
            clips = measured_warm(stage, clips, costs, name)
        with measured(costs, "assemble"):
            result = assemble_video(video, clips, work / "videos")
    finally:
        detect.run_retinaface, detect.to_detector_input = detector, shrink
        torch.set_num_threads(threads)
        use_cpus(os.cpu_count() or 1)
        keep_scratch(scratch)
    if result.video["status"] != "done":
        raise SystemExit(f"{film}: {result.video['error']}")
    costs["frames"] = result.video["frames_out"]
    costs["face_frames"] = result.video["faces_restored"]
    costs["bytes"] = Path(result.video["output_uri"]).stat().st_size
    return costs


def plain_reencode_ms(film: Path, preset: str, output: Path, frames: int) -> float:
    """Core-ms per frame of a plain `ffmpeg` re-encode of the film at `preset` (CRF 18, sound copied)."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(film), "-c:v", "libx264",
               "-preset", preset, "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "copy",
               str(output)]  # fmt: skip
    seconds, _ = run_cpu(command)
    return seconds * 1000 / frames


def measured_warm(stage, clips: list, costs: dict, key: str) -> list:
    """The stage's records out for `clips`, its CPU seconds over them in costs[key], measured warm: the
    first clip is run once before (an actor's first clip), and what that cost more than the same clip
    warm goes to costs[f"{key}_first"] (the detector's parts, timed inside, are counted warm only)."""
    start = cpu_seconds()
    saved = {name: costs.get(name) for name in ("detect_net", "detect_shrink")}
    stage.run(clips[:1])  # not stage.process: no attempt is counted, nothing recorded
    for name, value in saved.items():
        if value is None:
            costs.pop(name, None)
        else:
            costs[name] = value
    first = cpu_seconds() - start
    out = []
    with measured(costs, key):
        for index, clip in enumerate(clips):
            before = cpu_seconds()
            out += stage.process([clip])
            if index == 0:
                costs[f"{key}_first"] = first - (cpu_seconds() - before)
    return out


def _timed(function: Callable, costs: dict, key: str) -> Callable:
    def wrapper(*args, **kwargs):
        with measured(costs, key):
            return function(*args, **kwargs)

    return wrapper


def detector_ms(film: Path, name: str, weights: str | None, max_side: int, frames: int = 48) -> float:
    """CPU core-ms per frame of one detector's network and decoding on the film's frames (random weights
    for ResNet-50, which has none offline: the cost is the same)."""
    import numpy as np

    from pipeline.faces.detect import FaceDetector
    from pipeline.media import read_frames

    sample = read_frames(film, 0, frames)
    detector = FaceDetector(name, weights, max_side=max_side, random_weights=weights is None)
    with np.errstate(over="ignore", invalid="ignore"):  # random weights find absurd boxes
        detector.detect(sample[:8])  # warm-up
        costs: dict = {}
        with measured(costs, "all"):
            detector.detect(sample)
    return costs["all"] * 1000 / frames


# -- 3. the whole run under Ray, in a cgroup --------------------------------------------------------

CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def ray_run_cpu(film: Path, settings, out: Path) -> tuple[float, float] | None:
    """CPU seconds of a whole `run_archive` of the film in a fresh embedded Ray (every process, from a
    cgroup), and its wall seconds; None where cgroup v1 cpuacct cannot be used."""
    group = CPUACCT / f"dpt-bench-cost-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return None
    import ray

    from pipeline.run import run_archive

    try:
        start_ns, start = int((group / "cpuacct.usage").read_text()), time.perf_counter()
        summary = run_archive(
            [{"video_id": film.stem, "uri": str(film)}], out, settings, report=lambda line: None
        )
        ray.shutdown()
        time.sleep(2)  # workers leave after the driver
        used = (int((group / "cpuacct.usage").read_text()) - start_ns) / 1e9
        wall = time.perf_counter() - start
    finally:
        (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
    if summary.videos[0]["status"] != "done":
        raise SystemExit(f"{film}: {summary.videos[0]['error']}")
    return used, wall


def ray_overhead(film: Path, args) -> list[str]:
    """Ray's own CPU: the whole run of the film (five clips) and of its first shot alone (one clip) under
    an embedded Ray, each against the same stages in one process; two runs separate start-up from the
    cost per clip."""
    from pipeline.config import EncodeSettings

    one_shot = cost_film(*SIZES["1080p"], args.shot_frames)
    one_shot = DemoFilm(
        "cost_1080p_shot", "one shot", one_shot.width, one_shot.height, RATE, True, one_shot.shots[:1]
    )
    short = render_film(one_shot, args.footage, args.work / "cost_1080p_shot.mp4")
    settings = settings_for(args.weights, EncodeSettings().preset)
    runs = {}
    for name, path, clips in (("shot", short, 1), ("film", film, 5)):
        measured_run = ray_run_cpu(path, settings, args.work / f"ray_out_{name}")
        if measured_run is None:
            return ["", "- Ray's overhead: not measured (cgroup v1 cpuacct is not writable here)"]
        # the run restores with the tiny network: so do the stages it is set against
        costs = stage_costs(path, settings, args.work / f"stages_ray_{name}", network=True)
        costs["ms"] = {key: value * 1000 / costs["frames"] for key, value in costs.items() if key != "frames"}
        inside = sum(costs["ms"][key] for key in ("probe", "faces", "restore", "encode", "assemble"))
        # the run's actors each pay their first clip's extra once too: not Ray's
        first = sum(costs[f"{key}_first"] for key in ("faces", "restore", "encode"))
        used, wall = measured_run
        frames = args.shot_frames * clips
        runs[name] = (used - inside * frames / 1000 - first, clips, used, wall)
    (shot_extra, _, shot_used, _), (film_extra, _, film_used, film_wall) = runs["shot"], runs["film"]
    per_clip = (film_extra - shot_extra) / 4
    start_up = shot_extra - per_clip
    frames = 5 * args.shot_frames
    return [
        "",
        "#### Ray's own CPU time (a whole run under an embedded Ray, every process counted from a cgroup)",
        "",
        f"- the 1080p film: {film_used:.1f} core-seconds over {film_wall:.0f} s against "
        f"{film_used - film_extra:.1f} for the same stages in one process; its first shot alone: "
        f"{shot_used:.1f}",
        f"- Ray's part: **{start_up:.1f} core-seconds to start** (Ray, the actor pools, loading models in "
        f"each actor) and **{per_clip:.2f} core-seconds per clip** after that "
        f"({per_clip * 1000 / args.shot_frames:.1f} core-ms per frame at {args.shot_frames}-frame clips); "
        f"over this {frames}-frame film {film_extra * 1000 / frames:.1f} core-ms per frame",
    ]


# -- the report -------------------------------------------------------------------------------------


def settings_for(weights: Path, preset: str):
    from pipeline.config import load_settings

    return load_settings(
        None,
        [
            "model.name=tiny",
            "model.weights=synthetic:0",
            "model.precision=fp32",
            "faces.detector=retinaface_mobile0.25",
            f"faces.detector_weights={weights}",
            f"encode.preset={preset}",
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path("../shared/footage"))
    parser.add_argument("--weights", type=Path, default=Path("../shared/weights/retinaface_mobile0.25.pth"))
    parser.add_argument("--shot-frames", type=int, default=192, help="frames per shot (5 shots a film)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--compare-presets", nargs="*", default=["medium"],
                        help="presets at which the CPU side is also set against a plain re-encode")
    parser.add_argument("--work", type=Path, default=Path("bench-results/cost-work"))
    parser.add_argument("--no-ray", action="store_true", help="skip the whole run under Ray")
    parser.add_argument("--detector-frames", type=int, default=48, help="frames each detector is timed on")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from model.bench import emit
    from pipeline.config import EncodeSettings

    args.work.mkdir(parents=True, exist_ok=True)
    films = {
        size: render_film(
            cost_film(*SIZES[size], args.shot_frames), args.footage, args.work / f"cost_{size}.mp4"
        )
        for size in args.sizes
    }
    frames = 5 * args.shot_frames
    default_preset = EncodeSettings().preset
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        "### The CPU side per source frame (issue 12)",
        "",
        f"- command: `python -m pipeline.bench_cost {command}`; date: "
        f"{dt.date.today().isoformat()}; machine: {os.cpu_count()} cores; CPU time (user + system of every "
        "thread and child process), in core-ms per source frame",
        f"- films: {', '.join(args.sizes)} at 24000/1001 fps with AAC sound, {frames} frames: five shots, "
        "four "
        "with faces (moving gradient or test-pattern backgrounds), one test pattern",
    ]
    presets = None
    if "1080p" in films:
        presets = encoder_table(films["1080p"], frames, args.work, args.presets)
        lines += [
            "",
            "#### libx264 presets at 1080p, CRF 18 (a plain `ffmpeg` re-encode of the film)",
            "",
            "| preset | re-encode core-ms/frame | of which encode | of which decode | kbit/s | PSNR dB "
            "| VMAF |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in presets:
            lines.append(
                f"| {row['preset']} | {row['reencode_ms']:.1f} | {row['encode_ms']:.1f} | "
                f"{row['decode_ms']:.1f} | {row['kbps']:.0f} | {row['psnr']:.2f} | {row['vmaf']:.2f} |"
            )
    rate, rate_source = gpu_restoration_rate()
    lines += [
        "",
        "#### Stages, core-ms per source frame (restoration, the GPU's, gives back its crops and is not "
        "counted; stages with one thread, as in an actor of one CPU)",
        "",
        "| film | probe + scenes | faces: detection network | faces: shrink | faces: decode, track, "
        "align | paste + encode | assembly | CPU side, detection on CPU | CPU side, detection off the CPU "
        "| plain re-encode | ratio (detection on CPU) | kbit/s: output, plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_film = {}
    compare = {preset: settings_for(args.weights, preset) for preset in args.compare_presets
               if preset != default_preset}  # fmt: skip
    compared = []
    for size, film in films.items():
        costs = stage_costs(film, settings_for(args.weights, default_preset), args.work / f"stages_{size}",
                            compare)  # fmt: skip
        costs["ms"] = ms = {
            key: value * 1000 / costs["frames"]
            for key, value in costs.items()
            if key not in ("frames", "face_frames", "bytes")
        }
        rest = ms["faces"] - ms.get("detect_net", 0) - ms.get("detect_shrink", 0)
        on_cpu = ms["probe"] + ms["faces"] + ms["encode"] + ms["assemble"]
        off_cpu = on_cpu - ms.get("detect_net", 0)
        plain_file = args.work / f"plain_{size}.mp4"
        plain_ms = plain_reencode_ms(film, default_preset, plain_file, costs["frames"])
        kbps = {name: size_bytes * 8 / 1000 / float(costs["frames"] / RATE)
                for name, size_bytes in (("out", costs["bytes"]), ("plain", plain_file.stat().st_size))}
        for preset in compare:
            at_preset = on_cpu - ms["encode"] + ms[f"encode@{preset}"]
            plain_at = plain_reencode_ms(film, preset, args.work / f"plain_{size}_{preset}.mp4",
                                         costs["frames"])
            compared.append((size, preset, ms[f"encode@{preset}"], at_preset,
                             at_preset - ms.get("detect_net", 0), plain_at))  # fmt: skip
        per_film[size] = {
            "ms": ms,
            "on_cpu": on_cpu,
            "off_cpu": off_cpu,
            "face_share": costs["face_frames"] / costs["frames"],
            "first": {key: costs[f"{key}_first"] for key in ("faces", "encode")},
        }
        lines.append(
            f"| {size} | {ms['probe']:.1f} | {ms.get('detect_net', 0):.1f} | "
            f"{ms.get('detect_shrink', 0):.1f} | "
            f"{rest:.1f} | {ms['encode']:.1f} | {ms['assemble']:.1f} | {on_cpu:.1f} | {off_cpu:.1f} | "
            f"{plain_ms:.1f} | {on_cpu / plain_ms:.2f}x | {kbps['out']:.0f}, {kbps['plain']:.0f} |"
        )
    lines += ["", "Each stage is measured warm, as an actor runs at scale; an actor's first clip costs more, "
              "once (the first calls into torch, OpenCV and libav, and the memory it keeps between clips "
              "first touched), core-seconds: "
              + "; ".join(f"{size}: faces {film['first']['faces']:.1f}, paste + encode "
                          f"{film['first']['encode']:.1f}" for size, film in per_film.items())]  # fmt: skip
    if compared:
        lines += [
            "",
            "#### The same stages at other presets (paste + encode measured again on the same restored "
            "clips; both sides at that preset)",
            "",
            "| film | preset | paste + encode | CPU side, detection on CPU | CPU side, detection off the CPU "
            "| plain re-encode | ratio (detection on CPU) |",
            "|---|---|---|---|---|---|---|",
        ]
        for size, preset, encode_ms, at_preset, off_at_preset, plain_at in compared:
            lines.append(f"| {size} | {preset} | {encode_ms:.1f} | {at_preset:.1f} | {off_at_preset:.1f} | "
                         f"{plain_at:.1f} | {at_preset / plain_at:.2f}x |")  # fmt: skip
    lines += [
        "",
        f"#### The detector alone, core-ms per frame on the CPU ({args.detector_frames} frames, batches "
        "of 8; shrinking included)",
        "",
        "| film | mobile0.25 at 640 | ResNet-50 at 640 (random weights) | ResNet-50 at 320 |",
        "|---|---|---|---|",
    ]
    for size, film in films.items():
        mobile = detector_ms(film, "retinaface_mobile0.25", str(args.weights), 640, args.detector_frames)
        resnet = detector_ms(film, "retinaface_resnet50", None, 640, args.detector_frames)
        resnet_small = detector_ms(film, "retinaface_resnet50", None, 320, args.detector_frames)
        lines.append(f"| {size} | {mobile:.1f} | {resnet:.1f} | {resnet_small:.1f} |")
    if not args.no_ray and "1080p" in films:
        lines += ray_overhead(films["1080p"], args)
    lines += [
        "",
        f"#### Cores one GPU needs (restoration rate {rate:.0f} face-frames/s: {rate_source})",
        "",
        "| film | face-frames per frame | frames/s per GPU | cores, detection on CPU "
        "| cores, detection off the CPU |",
        "|---|---|---|---|---|",
    ]
    for size, film_costs in per_film.items():
        fps = rate / max(film_costs["face_share"], 1e-6)
        lines.append(
            f"| {size} | {film_costs['face_share']:.2f} | {fps:.0f} | "
            f"{fps * film_costs['on_cpu'] / 1000:.1f} | "
            f"{fps * film_costs['off_cpu'] / 1000:.1f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
