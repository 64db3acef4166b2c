"""Cluster operation: `dpt-batch submit` sends dpt-batch command lines to a real two-node Ray cluster
through Ray's Jobs API, and a submitted `run` restores on both nodes."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from cluster_support import LocalCluster, cluster_env, dashboard_unavailable, free_port

from pipeline.catalog import read_catalog
from pipeline.cluster import SetupError, cluster_address
from pipeline.submit import UPLOAD_EXCLUDES, SubmitError, entrypoint, job_env_vars, outcome, runtime_env

REPO = Path(__file__).resolve().parents[1]


def smoke_args(shared_dir: Path) -> list[str]:
    """The smoke settings by absolute paths: a job does not run in the repository."""
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    return ["--config", str(REPO / "configs" / "smoke.yaml"), "--set", f"faces.detector_weights={weights}"]


def submit_cli(address: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """`dpt-batch submit --address ADDRESS ARGS` as a separate process: (exit status, its output)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "submit", "--address", address, *args], cwd=REPO,
        env=env or cluster_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout,
    )  # fmt: skip
    return done.returncode, done.stdout


def submission_id(output: str) -> str:
    found = re.search(r"job (raysubmit_\w+) submitted", output)
    assert found, output
    return found.group(1)


# ---------------------------------------------------------------------------------------------------
# without a cluster


def test_the_job_runs_the_command_line_as_given():
    assert entrypoint(["run", "--manifest", "my films.parquet", "--set", "encode.crf=20"]) == (
        "python -m pipeline.cli run --manifest 'my films.parquet' --set encode.crf=20"
    )


def test_the_runtime_env_uploads_only_with_a_working_dir_and_never_local_folders(tmp_path):
    assert runtime_env() == {}
    assert runtime_env(env_vars={"DPT_CACHE_DIR": "/cache"}) == {"env_vars": {"DPT_CACHE_DIR": "/cache"}}
    uploaded = runtime_env(tmp_path)
    assert uploaded["working_dir"] == str(tmp_path)
    for folder in (".venv", ".git", "out/", "demo/", "bench-results/"):
        assert folder in uploaded["excludes"] and folder in UPLOAD_EXCLUDES


def test_env_names_take_their_values_from_this_shell():
    shell = {"DPT_CACHE_DIR": "/mnt/cache", "AWS_PROFILE": "archive"}
    assert job_env_vars(["DPT_CACHE_DIR", "AWS_PROFILE", "FSSPEC_S3={}"], shell) == {
        "DPT_CACHE_DIR": "/mnt/cache", "AWS_PROFILE": "archive", "FSSPEC_S3": "{}"}  # fmt: skip
    with pytest.raises(SubmitError, match="AWS_SECRET_ACCESS_KEY is not set in this shell"):
        job_env_vars(["AWS_SECRET_ACCESS_KEY"], shell)


def test_a_failed_job_exits_with_its_commands_exit_status():
    def details(status, code, message=""):
        return SimpleNamespace(status=SimpleNamespace(value=status), driver_exit_code=code, message=message)

    assert outcome(details("SUCCEEDED", 0), "j").exit_code == 0
    assert outcome(details("FAILED", 2), "j").exit_code == 2
    message = "Job entrypoint command failed with exit code 3, last available logs: ..."
    assert outcome(details("FAILED", None, message), "j").exit_code == 3
    assert outcome(details("FAILED", -9), "j").exit_code == 137  # killed by SIGKILL, as a shell says
    setup_failed = outcome(details("FAILED", None, "runtime env setup failed: no such package"), "j")
    assert setup_failed.exit_code == 1
    assert setup_failed.summary() == "job j failed (exit status 1): runtime env setup failed: no such package"
    assert outcome(details("FAILED", None, message), "j").summary() == "job j failed (exit status 3)"
    assert outcome(details("STOPPED", None), "j").exit_code == 1


def test_an_unreachable_address_is_refused_with_exit_2_naming_it():
    address = f"http://127.0.0.1:{free_port()}"
    code, output = submit_cli(address, "--", "run", "--manifest", "a.parquet", "--output", "out", timeout=60)
    assert code == 2, output
    assert f"cannot reach Ray's Jobs API at {address}" in output and "http://HEAD:8265" in output


def test_a_command_line_that_is_not_a_dpt_batch_command_is_refused():
    code, output = submit_cli("http://127.0.0.1:9", "--", "dpt-batch", "run", timeout=60)
    assert code == 2 and "give the command line without `dpt-batch`" in output


def test_inside_a_ray_job_a_run_connects_to_the_jobs_cluster():
    assert cluster_address(None, {}) is None  # an embedded local Ray
    assert cluster_address(None, {"RAY_ADDRESS": "10.0.0.5:6379"}) == "10.0.0.5:6379"
    assert cluster_address("auto", {"RAY_ADDRESS": "10.0.0.5:6379"}) == "auto"
    with pytest.raises(SetupError, match="dpt-batch submit --address http://head:8265"):
        cluster_address(None, {"RAY_ADDRESS": "http://head:8265"})


# ---------------------------------------------------------------------------------------------------
# on a real two-node cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request) -> LocalCluster:
    """A head (with the dashboard) and a worker node on 127.0.0.1, two CPUs each, started from a folder
    outside the repository (jobs use the installed dpt-batch); torn down even when a test fails."""
    reason = dashboard_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalCluster(cwd=tmp_path_factory.mktemp("cluster"))

    def stop() -> None:
        survivors = cluster.stop()
        assert not survivors, f"processes of the test cluster survived its teardown: {survivors}"

    request.addfinalizer(stop)
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def film_b_manifest(demo_archive, tmp_path_factory) -> Path:
    manifest = pd.read_parquet(demo_archive)
    path = tmp_path_factory.mktemp("film_b") / "archive.parquet"
    manifest[manifest.video_id == "film_b"].reset_index(drop=True).to_parquet(path)
    return path


def test_the_cluster_has_a_head_and_a_worker_node(cluster):
    nodes = cluster.alive_nodes().values()
    assert len(nodes) == 2
    assert sorted(resources.get("worker_node", 0) for resources in nodes) == [0, 1]
    assert all(resources["CPU"] == cluster.cpus for resources in nodes)


def test_a_submitted_run_restores_the_archive_on_both_nodes(cluster, film_b_manifest, shared_dir, tmp_path):
    out = tmp_path / "out"  # on storage both nodes share: they are on one machine
    code, output = submit_cli(
        cluster.dashboard_url, "--wait", "--",
        "run", "--manifest", str(film_b_manifest), "--output", str(out), *smoke_args(shared_dir),
    )  # fmt: skip
    assert code == 0, output
    assert "[1/1] film_b: done" in output  # the run's own report, through the job's logs
    assert "succeeded" in output

    catalog = read_catalog(str(out))
    assert catalog.videos.status.tolist() == ["done"]
    video = catalog.videos.iloc[0]
    assert video.frames_out == video.frames_in == 50
    assert len(catalog.clips) == video.clips >= 2
    assert set(catalog.clips.status) == {"done"} and catalog.clips.frames.sum() == 50
    assert (out / "videos" / "film_b.mp4").is_file()
    # Three stage pools of at least one 1-CPU actor each do not fit on one 2-CPU node.
    assert cluster.stage_actor_nodes(submission_id(output)) == {"head", "worker"}


def test_a_failed_job_gives_submit_its_exit_status_and_its_logs(cluster, shared_dir, tmp_path):
    missing = tmp_path / "missing.parquet"
    code, output = submit_cli(
        cluster.dashboard_url, "--wait", "--",
        "run", "--manifest", str(missing), "--output", str(tmp_path / "out"), *smoke_args(shared_dir),
    )  # fmt: skip
    assert code == 2, output  # `run` refused the manifest: exit 2, not submit's fallback 1
    assert str(missing) in output and "failed (exit status 2)" in output


def test_a_working_dir_is_uploaded_and_env_names_are_passed(cluster, shared_dir, tmp_path):
    from ray.job_submission import JobSubmissionClient

    env = {**cluster_env(), "DPT_CACHE_DIR": str(tmp_path / "cache")}
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    # A config path relative to the uploaded tree: the job's current directory.
    code, output = submit_cli(
        cluster.dashboard_url, "--wait", "--working-dir", str(REPO), "--env", "DPT_CACHE_DIR", "--",
        "weights", "path", "--config", "configs/smoke.yaml", "--set", f"faces.detector_weights={weights}",
        env=env,
    )  # fmt: skip
    assert code == 0, output
    assert "synthetic weights, seed 0" in output
    job = JobSubmissionClient(cluster.dashboard_url).get_job_info(submission_id(output))
    assert job.runtime_env["working_dir"].startswith("gcs://")  # uploaded, .venv and .git left out
    assert job.runtime_env["env_vars"] == {"DPT_CACHE_DIR": str(tmp_path / "cache")}


def test_submit_sh_submits_through_ray_job_submit(cluster, shared_dir, tmp_path):
    env = {**cluster_env(), "RAY_ADDRESS": cluster.dashboard_url, "JOB_ENV": "DPT_CACHE_DIR",
           "DPT_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    done = subprocess.run(
        ["bash", str(REPO / "jobs" / "submit.sh"), "weights", "path", *smoke_args(shared_dir)], env=env,
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "synthetic weights, seed 0" in done.stdout, done.stdout  # the command's output, from the job
    assert re.search(r"Job 'raysubmit_\w+' succeeded", done.stdout), done.stdout
