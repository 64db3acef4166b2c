"""Cluster operation: `dpt-batch submit` sends dpt-batch command lines to a real two-node Ray cluster
through Ray's Jobs API, and a submitted `run` restores on both nodes."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from cluster_support import LocalCluster, cluster_env, dashboard_unavailable, free_port, unshare_unavailable
from run_support import comparable_catalog, finish_run, kill_run, start_run, wait_for

from pipeline.catalog import read_catalog
from pipeline.cluster import SetupError, cluster_address
from pipeline.demo import DEMO_FILMS
from pipeline.media import probe
from pipeline.storage import exists
from pipeline.submit import UPLOAD_EXCLUDES, SubmitError, entrypoint, job_env_vars, outcome, runtime_env

REPO = Path(__file__).resolve().parents[1]
FILMS = {film.video_id: film for film in DEMO_FILMS if film.video_id == "film_b"}  # the short one


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


S3_MANIFEST = "s3://archive/archive.parquet"
S3_DETECTOR = "s3://archive/weights/retinaface.pth"


@pytest.fixture(scope="module")
def s3_archive(moto_s3_module, demo_archive, shared_dir) -> str:
    """The demo archive's film_b (two clips), its manifest and the detector's weights on the local S3."""
    import fsspec

    s3 = fsspec.filesystem("s3")
    for film in FILMS.values():
        s3.put_file(str(demo_archive.parent / film.file_name), f"archive/films/{film.video_id}.mp4")
    s3.put_file(str(shared_dir / "weights" / "retinaface_mobile0.25.pth"), S3_DETECTOR.removeprefix("s3://"))
    manifest = pd.DataFrame({"video_id": list(FILMS), "uri": [f"s3://archive/films/{v}.mp4" for v in FILMS]})
    with s3.open(S3_MANIFEST, "wb") as sink:
        manifest.to_parquet(sink)
    return moto_s3_module


@pytest.fixture(scope="module")
def cluster(s3_archive, tmp_path_factory, request) -> LocalCluster:
    """A head (with the dashboard) and a worker node on 127.0.0.1, one CPU each (the smallest cluster a
    run fits on: its actors share CPUs), started from a folder outside the repository (jobs use the
    installed dpt-batch), that share no disk: the worker node has
    a private tmpfs over the folder where every node keeps its caches and scratch ($DPT_CACHE_DIR), and
    both reach the local S3. Torn down even when a test fails."""
    reason = dashboard_unavailable() or unshare_unavailable()
    if reason:
        pytest.skip(reason)
    scratch = tmp_path_factory.mktemp("scratch")
    s3 = json.dumps({"endpoint_url": s3_archive, "skip_instance_cache": True})
    env = {**cluster_env(), "FSSPEC_S3": s3,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "DPT_CACHE_DIR": str(scratch),
           # a lost node is declared dead after about 5 s (Ray's default: 30 s or more)
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "2000",
           "RAY_health_check_failure_threshold": "5"}  # fmt: skip
    cluster = LocalCluster(cwd=tmp_path_factory.mktemp("cluster"), cpus=1, env=env, private=scratch)

    def stop() -> None:
        survivors = cluster.stop()
        assert not survivors, f"processes of the test cluster survived its teardown: {survivors}"

    request.addfinalizer(stop)
    cluster.start()
    return cluster


def s3_run_args() -> list[str]:
    """A run of the S3 archive with the smoke settings, the detector's weights fetched from S3."""
    return ["--manifest", S3_MANIFEST, "--config", str(REPO / "configs" / "smoke.yaml"),
            "--set", f"faces.detector_weights={S3_DETECTOR}"]  # fmt: skip


def on_worker_node(cluster: LocalCluster, code: str) -> str:
    """The output of `code` run as a Ray task on the worker node (a driver in a process of its own)."""
    driver = f"""
import ray
ray.init(address="127.0.0.1:{cluster.gcs_port}", log_to_driver=False)
def task():
    import io, contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec({code!r})
    return out.getvalue()
print(ray.get(ray.remote(num_cpus=0, resources={{"worker_node": 0.01}})(task).remote()), end="")
"""
    done = subprocess.run([sys.executable, "-c", driver], env=cluster.env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_cluster_has_a_head_and_a_worker_node_that_share_no_scratch_disk(cluster):
    nodes = cluster.alive_nodes().values()
    assert len(nodes) == 2
    assert sorted(resources.get("worker_node", 0) for resources in nodes) == [0, 1]
    assert all(resources["CPU"] == cluster.cpus for resources in nodes)
    (cluster.private / "on-the-head").touch()
    code = f"""
import os
open(os.path.join({str(cluster.private)!r}, "on-the-worker"), "w").close()
print(sorted(os.listdir({str(cluster.private)!r})))"""
    assert "on-the-head" not in on_worker_node(cluster, code)
    assert not (cluster.private / "on-the-worker").exists()


def node_roles(cluster: LocalCluster, nodes_column: pd.Series) -> set[str]:
    """"head"/"worker" for the nodes named in a clips catalog's `nodes` column ("stage:NODE ...")."""
    roles = {node[:8]: "worker" if "worker_node" in resources else "head"
             for node, resources in cluster.alive_nodes().items()}  # fmt: skip
    named = {entry.split(":")[1] for text in nodes_column for entry in text.split()}
    return {roles.get(node, node) for node in named}


@pytest.fixture(scope="module")
def cluster_run(cluster, shared_dir):
    """The S3 archive restored by a job submitted to the cluster, into s3://archive/runs/cluster."""
    code, output = submit_cli(
        cluster.dashboard_url, "--wait", "--", "run", *s3_run_args(), "--output", "s3://archive/runs/cluster",
    )  # fmt: skip
    return code, output, submission_id(output)


def test_a_submitted_run_restores_the_archive_on_nodes_that_share_only_object_storage(cluster, cluster_run,
                                                                                     tmp_path):  # fmt: skip
    import fsspec

    code, output, submitted = cluster_run
    assert code == 0, output
    assert "[1/1] film_b: done" in output  # the run's own report, through the job's logs
    assert "succeeded" in output

    catalog = read_catalog("s3://archive/runs/cluster")
    video = catalog.videos.iloc[0]
    assert video.status == "done" and video.frames_out == video.frames_in == FILMS["film_b"].frame_count
    assert video.output_uri == "s3://archive/runs/cluster/videos/film_b.mp4"
    assert set(catalog.clips.status) == {"done"} and len(catalog.clips) == video.clips >= 2
    pictures = catalog.tracks[catalog.tracks.restored][["sheet", "flipbook"]].to_numpy().ravel()
    assert len(pictures) and all(exists(f"s3://archive/runs/cluster/{path}") for path in pictures)
    # Clips went through stages on both nodes, though neither saw the other's scratch files: crops came
    # through the object store, sources from S3, segments from the output.
    assert node_roles(cluster, catalog.clips.nodes) == {"head", "worker"}
    assert cluster.stage_actor_nodes(submitted) == {"head", "worker"}
    s3 = fsspec.filesystem("s3")
    film = tmp_path / "film_b.mp4"
    s3.get_file("archive/runs/cluster/videos/film_b.mp4", str(film))
    assert probe(film).frame_count == FILMS["film_b"].frame_count
    assert not s3.exists("archive/runs/cluster/state/segments/film_b")  # published segments, removed
    used = json.loads(s3.cat_file("archive/runs/cluster/run.json"))["weights_used"]
    assert used["faces.detector_weights"].startswith(f"{S3_DETECTOR}: sha256 ")
    assert not s3.exists("archive/runs/cluster/.dpt-batch.lock")  # the URL's run lock, released


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


def test_a_run_whose_worker_node_is_lost_is_finished_by_a_rerun(cluster, cluster_run, tmp_path):
    """The worker node is killed (kill -9 of every process) while it holds a clip in a stage, then the
    run's driver; a new worker node (an empty scratch disk) joins and the same command finishes the run
    with the catalog of the uninterrupted run."""
    faults = tmp_path / "faults"
    faults.mkdir()
    cluster.kill_worker()
    cluster.start_worker(env={"DPT_FAULT_DIR": str(faults), "DPT_PAUSE_AT": "faces,restore,encode"})
    output = "s3://archive/runs/node-lost"
    args = [*s3_run_args(), "--output", output, "--address", f"127.0.0.1:{cluster.gcs_port}"]
    run = start_run(args, cluster.env)
    wait_for(faults / "paused", run)  # only the worker node's processes pause
    cluster.kill_worker()
    kill_run(run)
    cluster.start_worker()
    code, log = finish_run(start_run(args, cluster.env))
    assert code == 0, log
    expected, resumed = comparable_catalog("s3://archive/runs/cluster"), comparable_catalog(output)
    for name in expected:
        pd.testing.assert_frame_equal(resumed[name], expected[name], obj=name)
