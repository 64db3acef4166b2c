"""Archive benchmark: the driver's cost per video, for manifests of 1k, 10k and 100k rows (issue 11).

    python -m pipeline.bench_archive --rows 1000 10000 100000 \\
        --weights ../shared/weights/retinaface_mobile0.25.pth --out bench-results/archive.md

Two measurements per manifest size, each in a fresh process of its own (so that its peak resident
memory, ru_maxrss, is that of the driver alone; Ray's workers are other processes):

* start-up, with the real pipeline: `run_archive` (smoke configuration, embedded Ray) on a manifest
  of N rows on a local moto S3 server, whose rows point in turn at 20 tiny distinct films (16 frames,
  64x48, one clip each); the output is on the same server. Measured from the call of `run_archive`
  (Ray already up) to the first clip record in OUT/state/clips and to the first finished video; the
  run is stopped there (a run of 100,000 videos would take days on 2 cores).
* catalog, without Ray: CatalogParts fed the rows of N finished videos (3 clips and 2 tracks each, a
  tenth failed), as a run feeds it (a part per 1,000 videos), then `compact_catalog` with the
  manifest's own columns. Measured: bytes of parts, bytes of the compacted catalog, their ratio, the
  compaction's seconds and the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DISTINCT_FILMS = 20
CLIPS, TRACKS = 3, 2
GOAL_FIRST_CLIP_S, GOAL_DRIVER_MB, GOAL_WRITTEN_RATIO = 30.0, 1536.0, 2.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class FirstVideo(Exception):
    """Raised from the run's report on its first finished video, to stop the run there."""


def measure_startup(rows: int, weights: str, bucket_root: str) -> dict:
    """Seconds to the first clip and video of a run over `rows` manifest rows on S3 (see module doc)."""
    import fsspec
    import pandas as pd

    from pipeline.cluster import connect
    from pipeline.config import load_settings
    from pipeline.context import make_context
    from pipeline.run import run_archive

    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    uris = [f"s3://{bucket_root}/films/film-{index % DISTINCT_FILMS:02d}.mp4" for index in range(rows)]
    manifest = pd.DataFrame({"video_id": [f"reel-{index:06d}" for index in range(rows)], "uri": uris})
    videos = [{"video_id": v, "uri": u} for v, u in zip(manifest["video_id"], manifest["uri"], strict=True)]
    output = f"s3://{bucket_root}/out-{rows}"
    context = make_context(settings, connect(settings, None), output, Path(tempfile.mkdtemp()) / "work")
    s3 = fsspec.filesystem("s3")
    found: dict[str, float] = {}
    started = time.perf_counter()

    def watch_clips() -> None:
        while "first_video_s" not in found:
            try:
                if s3.find(f"{bucket_root}/out-{rows}/state/clips"):
                    found.setdefault("first_clip_s", time.perf_counter() - started)
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.2)

    def report(line: str) -> None:
        if line.startswith("[1/"):
            found["first_video_s"] = time.perf_counter() - started
            raise FirstVideo(line)

    watcher = threading.Thread(target=watch_clips, daemon=True)
    started = time.perf_counter()
    watcher.start()
    try:
        run_archive(videos, output, settings, report=report, manifest=manifest, context=context)
    except FirstVideo:
        pass
    watcher.join(timeout=5)
    return {"rows": rows, **found, "driver_peak_mb": peak_rss_mb()}


def catalog_rows(index: int) -> tuple[dict, list[dict], list[dict]]:
    """The catalog rows of one finished video, as a run makes them (a tenth failed)."""
    video_id = f"reel-{index:06d}"
    failed = index % 10 == 9
    frames = 240 + index % 97
    video = {
        "video_id": video_id, "uri": f"s3://archive/films/{video_id}.mp4",
        "status": "failed" if failed else "done",
        "output_uri": "" if failed else f"s3://archive/out/videos/{video_id}.mp4", "frames_in": frames,
        "frames_out": 0 if failed else frames, "fps": 24000 / 1001, "fps_rational": "24000/1001",
        "duration_s": frames * 1001 / 24000, "width": 1280, "height": 720, "clips": CLIPS, "tracks": TRACKS,
        "faces_restored": 0 if failed else 40 + index % 13, "seconds_probe": 0.4 + index % 7 / 10,
        "seconds_faces": 2.0 + index % 5 / 10, "seconds_restore": 7.5 + index % 11 / 10,
        "seconds_encode": 1.2 + index % 3 / 10, "seconds_total": 30.0 + index % 17,
        "error": "restore: RuntimeError: CUDA out of memory" if failed else "", "weights": "a" * 64,
    }  # fmt: skip
    clips, tracks, start = [], [], 0
    for clip in range(CLIPS):
        end = start + frames // CLIPS if clip < CLIPS - 1 else frames
        clips.append({"video_id": video_id, "clip_index": clip, "start": start, "end": end,
                      "frames": end - start, "scene": clip, "tracks": 1 if clip < TRACKS else 0,
                      "faces_restored": 20 + clip,
                      "status": "failed" if failed and clip == CLIPS - 1 else "done",
                      "error": video["error"] if failed and clip == CLIPS - 1 else "",
                      "artifact": f"/work/{video_id}/clip_{clip:05d}.mp4"})  # fmt: skip
        start = end
    for track in range(TRACKS):
        tracks.append({"video_id": video_id, "clip_index": track, "track_id": 0, "first_frame": 10 + track,
                       "last_frame": 50 + track, "frames": 41, "restored": True, "skip_reason": "",
                       "mean_score": 0.9 + track / 100})  # fmt: skip
    return video, clips, tracks


def measure_catalog(rows: int) -> dict:
    """Catalog bytes written over a run of `rows` videos and the compaction's memory (see module doc)."""
    import pandas as pd

    from pipeline.catalog_parts import CatalogParts, compact_catalog

    output = tempfile.mkdtemp()
    ids = [f"reel-{index:06d}" for index in range(rows)]
    manifest = pd.DataFrame({"video_id": ids, "uri": [f"s3://archive/films/{v}.mp4" for v in ids],
                             "collection": [f"box-{index // 500}" for index in range(rows)]})  # fmt: skip
    parts = CatalogParts(output, every_s=3600, max_videos=1000)
    for index in range(rows):
        parts.add(*catalog_rows(index))
    parts.flush()
    before = peak_rss_mb()
    started = time.perf_counter()
    final = compact_catalog(output, ids, manifest)
    return {"rows": rows, "parts_bytes": parts.bytes_written, "final_bytes": final,
            "compact_s": time.perf_counter() - started, "before_compact_mb": before,
            "catalog_peak_mb": peak_rss_mb()}  # fmt: skip


def child(args: list[str]) -> dict:
    """Run a measurement in a fresh process and return what it printed last (one JSON line)."""
    command = [sys.executable, "-m", "pipeline.bench_archive", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def s3_server() -> tuple[object, str]:
    """A moto S3 server on 127.0.0.1 with bucket `archive` holding the tiny films; its endpoint."""
    import fsspec
    from moto.server import ThreadedMotoServer

    from pipeline.media import ffmpeg_exe

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["FSSPEC_S3"] = json.dumps({"endpoint_url": endpoint, "skip_instance_cache": True})
    s3 = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
    s3.mkdir("archive")
    with tempfile.TemporaryDirectory() as folder:
        for index in range(DISTINCT_FILMS):
            film = Path(folder) / f"film-{index:02d}.mp4"
            subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc=size=64x48:rate=24,hue=h={index * 17}", "-frames:v", "16",
                            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(film)],
                           check=True)  # fmt: skip
            s3.put_file(str(film), f"archive/films/{film.name}")
    return server, endpoint


def markdown(startup: list[dict], catalog: list[dict]) -> str:
    cpu = platform.processor() or platform.machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "## Archive scale: the driver's cost per video (`make bench-archive`)",
        "",
        f"`python -m pipeline.bench_archive --rows {' '.join(str(r['rows']) for r in startup)}` on "
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, {dt.date.today().isoformat()}; Ray "
        f"{_version('ray')}, pyarrow {_version('pyarrow')}.",
        "",
        "Start-up is measured with the real pipeline (smoke configuration, embedded Ray): a manifest of N "
        f"rows on a local moto S3 server pointing in turn at {DISTINCT_FILMS} tiny distinct films "
        "(16 frames, one clip each), output on the same server, timed from the call of `run_archive` "
        "(Ray up) to the first clip record and the first finished video, then stopped. Driver memory is "
        "the peak resident memory of the driver process alone (Ray's workers are other processes). "
        "The catalog is measured without Ray: CatalogParts fed N finished videos "
        f"({CLIPS} clips, {TRACKS} tracks each, a tenth failed), a part per 1,000 videos, as a run feeds "
        "it, then compacted with the manifest's columns; "
        "written bytes are the parts plus the compacted files.",
        "",
        "| rows | first clip s | first video s | driver peak MB | parts MB | final catalog MB "
        "| written / final | parts / final | compaction s | compaction process peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run, cat in zip(startup, catalog, strict=True):
        lines.append(
            f"| {run['rows']} | {_s(run, 'first_clip_s')} | {_s(run, 'first_video_s')} "
            f"| {run['driver_peak_mb']:.0f} | {cat['parts_bytes'] / 2**20:.2f} "
            f"| {cat['final_bytes'] / 2**20:.2f} "
            f"| {_written(cat):.2f} | {cat['parts_bytes'] / cat['final_bytes']:.2f} | {cat['compact_s']:.1f} "
            f"| {cat['catalog_peak_mb']:.0f} |"
        )
    lines += ["", "Growth between sizes (larger / smaller):", ""]
    for index in range(1, len(startup)):
        a, b = startup[index - 1], startup[index]
        ca, cb = catalog[index - 1], catalog[index]
        lines.append(
            f"- {a['rows']} -> {b['rows']} rows: first clip x{_ratio(b, a, 'first_clip_s')}, first video "
            f"x{_ratio(b, a, 'first_video_s')}, driver peak memory x{_ratio(b, a, 'driver_peak_mb')}, "
            f"final catalog x{_ratio(cb, ca, 'final_bytes')}, compaction process peak memory "
            f"x{_ratio(cb, ca, 'catalog_peak_mb')}"
        )
    last, cat = startup[-1], catalog[-1]
    driver_mb = max(last["driver_peak_mb"], cat["catalog_peak_mb"])
    lines += [
        "",
        f"Goals at {last['rows']} rows: first clip {_s(last, 'first_clip_s')} s (goal <= "
        f"{GOAL_FIRST_CLIP_S:.0f} s); driver memory {driver_mb:.0f} MB at most over start-up and compaction "
        f"(goal <= {GOAL_DRIVER_MB:.0f} MB); catalog bytes written {_written(cat):.2f}x the final catalog "
        f"(goal <= {GOAL_WRITTEN_RATIO:.0f}x).",
    ]
    return "\n".join(lines) + "\n"


def _s(measured: dict, name: str) -> str:
    return f"{measured[name]:.1f}" if name in measured else "n/a"


def _ratio(larger: dict, smaller: dict, name: str) -> str:
    if not larger.get(name) or not smaller.get(name):
        return "n/a"
    return f"{larger[name] / smaller[name]:.2f}"


def _written(catalog: dict) -> float:
    """Catalog bytes written over the run (parts, then the compacted files) per byte of the final catalog."""
    return (catalog["parts_bytes"] + catalog["final_bytes"]) / catalog["final_bytes"]


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--weights", default="../shared/weights/retinaface_mobile0.25.pth",
                        help="the RetinaFace weights of the smoke configuration")  # fmt: skip
    parser.add_argument("--out", type=Path, help="also write the markdown section here")
    parser.add_argument("--startup", type=int, help=argparse.SUPPRESS)  # a child's measurement
    parser.add_argument("--catalog", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.startup:
        print(json.dumps(measure_startup(args.startup, args.weights, "archive")), flush=True)
        return
    if args.catalog:
        print(json.dumps(measure_catalog(args.catalog)), flush=True)
        return
    server, _ = s3_server()
    try:
        startup, catalog = [], []
        for rows in args.rows:
            startup.append(child(["--startup", str(rows), "--weights", str(Path(args.weights).resolve())]))
            catalog.append(child(["--catalog", str(rows)]))
            print(f"{rows} rows: {startup[-1]} {catalog[-1]}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    text = markdown(startup, catalog)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
