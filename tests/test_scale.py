"""The driver's cost does not grow with the archive: an S3 manifest of 5,000 objects on a local moto
server reaches its first finished video about as soon as one of 50 (issue 11).

The objects are tiny text files named .mp4, so every video fails in the probe stage after its source
was read: what is measured is everything the driver does per video before the first one is finished
(listing, fingerprinting, reading earlier records, building the dataset), not restoration."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

SMALL, LARGE = 50, 5000
GROWTH_ALLOWED = 1.5


class FirstVideo(Exception):
    """Raised from the run's report on its first finished video, to stop the run there."""


@pytest.fixture
def s3_ray(moto_s3, monkeypatch):
    """An embedded Ray whose workers reach the moto server (they inherit the environment it starts in)."""
    import ray

    ray.shutdown()  # a Ray left by another module was started without the moto endpoint
    monkeypatch.setenv("FSSPEC_S3", json.dumps({"endpoint_url": moto_s3, "skip_instance_cache": True}))
    yield moto_s3
    ray.shutdown()


def put_objects(objects: dict[str, bytes], bucket: str = "archive") -> None:
    """Put objects into the moto server's bucket through moto's own store, which the server shares
    (it runs in this process): 5,000 PUTs over HTTP take about a minute on 2 cores. Every read the
    run makes goes over HTTP as on S3."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key, value in objects.items():
        backend.put_object(bucket, key, value)


def seconds_to_first_video(manifest: list[dict], out: Path, settings) -> float:
    """Seconds from the call of `run_archive` to its first finished video (the run is then stopped)."""
    from pipeline.cluster import connect
    from pipeline.context import make_context
    from pipeline.run import run_archive

    context = make_context(settings, connect(settings, None), str(out), out.parent / f"{out.name}-work")

    def report(line: str) -> None:
        if line.startswith("[1/"):
            raise FirstVideo(line)

    started = time.perf_counter()
    with pytest.raises(FirstVideo, match="failed"):
        run_archive(manifest, out, settings, report=report, context=context)
    return time.perf_counter() - started


@pytest.mark.slow
def test_the_first_video_of_5000_on_s3_is_finished_about_as_soon_as_the_first_of_50(
    s3_ray, shared_dir, tmp_path
):
    """A cold run that starts Ray's workers, then a run of 5,000 rows and one of 50 (each 16-32 s on the
    loaded 2-core machine, most of it the actor pools starting; 1.5-3 minutes in all); a second pair
    only if the first fails. The driver's old loop (a HEAD per video before the first clip) took 0.35 s
    a video here: its 5,000-row run had not finished after 13 minutes."""
    import fsspec

    from pipeline.config import load_settings

    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    settings = load_settings(Path("configs/smoke.yaml"), [f"faces.detector_weights={weights}"])
    put_objects({f"films/reel-{index:05d}.mp4": b"not a film %d\n" % index for index in range(LARGE)})
    assert len(fsspec.filesystem("s3").ls("archive/films")) == LARGE
    rows = [{"video_id": f"reel-{index:05d}", "uri": f"s3://archive/films/reel-{index:05d}.mp4"}
            for index in range(LARGE)]  # fmt: skip

    seconds_to_first_video(rows[:SMALL], tmp_path / "cold", settings)  # Ray's workers start: not counted
    times: dict[int, list[float]] = {SMALL: [], LARGE: []}
    for attempt in range(2):  # a second pair only when a loaded machine made the first one slow
        for size in (LARGE, SMALL):
            times[size].append(seconds_to_first_video(rows[:size], tmp_path / f"{size}-{attempt}", settings))
        small, large = statistics.median(times[SMALL]), statistics.median(times[LARGE])
        print(f"seconds to the first finished video, by manifest rows: {times}")
        if large <= GROWTH_ALLOWED * small:
            break
    assert large <= GROWTH_ALLOWED * small, f"seconds to the first finished video, by manifest rows: {times}"
