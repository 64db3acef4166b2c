"""Fixtures shared by the whole test suite."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from run_support import run_cli, smoke_args
from shared_data import SHARED_DIR, absence_message, shared_missing, under_ci


def pytest_sessionstart(session) -> None:
    """Under CI, a missing ../shared fails the run before any test, instead of skipping half of it."""
    if under_ci() and not SHARED_DIR.is_dir():
        pytest.exit(absence_message(), returncode=1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The developers' shared data folder (../shared beside the repository); skips when absent
    (fails under CI)."""
    if not SHARED_DIR.is_dir():
        shared_missing(absence_message())
    return SHARED_DIR


@pytest.fixture
def moto_s3(monkeypatch) -> str:
    """A moto S3 server on 127.0.0.1 (a free port), fsspec's s3:// pointed at it, bucket `archive` made.

    Skips when s3fs or moto is missing or the server does not start.
    """
    yield from serve_moto(monkeypatch)


@pytest.fixture(scope="module")
def moto_s3_module() -> str:
    """`moto_s3` for the tests of a module together (e.g. with a Ray cluster that reaches it)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from serve_moto(monkeypatch)


def serve_moto(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import threading

    import fsspec

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits without a timeout for a server that may never bind: wait for it in a thread.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(timeout=20)
    if starter.is_alive():
        pytest.skip("the moto S3 server did not start on 127.0.0.1")
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its buckets in the process, across servers: start and leave with an empty S3.
    _reset_moto(endpoint)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint, "skip_instance_cache": True})
    fsspec.filesystem("s3").mkdir("archive")
    yield endpoint
    _reset_moto(endpoint)
    server.stop()


def _reset_moto(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)


@pytest.fixture(scope="session")
def demo_archive(shared_dir, tmp_path_factory) -> Path:
    """The demo archive (pipeline.demo.DEMO_FILMS from ../shared/footage), built once per session.

    Returns the manifest path; the films lie beside it. Skips when the footage is absent.
    """
    from pipeline.demo import DEMO_FILMS, build_demo_archive

    footage = shared_dir / "footage"
    missing = [name for film in DEMO_FILMS for name in film.footage if not (footage / name).is_file()]
    if missing:
        shared_missing(f"footage for the demo archive is absent: {', '.join(sorted(set(missing)))}")
    return build_demo_archive(footage, tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def ray_session():
    """Ray started in this process by the in-process runs of the tests that ask for it; shut down at the
    end of the session (a module that needs Ray started otherwise shuts it down first)."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="session")
def archive_with_bad_items(demo_archive, tmp_path_factory) -> Path:
    """The demo films plus a text file named .mp4 ("letter") and a file that does not exist ("gone")."""
    folder = tmp_path_factory.mktemp("bad")
    text = folder / "letter.mp4"
    text.write_text("Dear archivist, this is not a film.\n")
    manifest = pd.read_parquet(demo_archive)
    bad = pd.DataFrame({"uri": [str(text), str(folder / "gone.mp4")], "video_id": ["letter", "gone"]})
    path = folder / "archive.parquet"
    pd.concat([manifest, bad], ignore_index=True).to_parquet(path)
    return path


@pytest.fixture(scope="session")
def smoke_run(archive_with_bad_items, shared_dir, tmp_path_factory, ray_session):
    """`dpt-batch run` of `archive_with_bad_items` with the smoke settings, once per session (a few minutes
    on 2 cores; test_run.py checks it, test_report.py reports it): (output folder, click result). Its CPU
    actors ask Ray for memory (cluster.actor_memory_gb, which changes no output), so that a real run
    schedules them that way too."""
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_cli("--manifest", str(archive_with_bad_items), "--output", str(out), *smoke_args(shared_dir),
                     "--set", "cluster.actor_memory_gb=0.5")  # fmt: skip
    return out, result
