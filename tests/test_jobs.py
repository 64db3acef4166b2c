"""jobs/: the KubeRay RayJob and the `ray job submit` script are well formed and say what they run."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def container(group: dict) -> dict:
    (only,) = group["template"]["spec"]["containers"]
    return only


def test_the_rayjob_runs_dpt_batch_with_gpu_workers_for_restoration_only():
    job = yaml.safe_load((JOBS / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("dpt-batch run ")
    assert "--manifest" in spec["entrypoint"] and "--output" in spec["entrypoint"]

    cluster = spec["rayClusterSpec"]
    head = container(cluster["headGroupSpec"])
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu, cpu = container(groups["gpu"]), container(groups["cpu"])
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    for node in (head, cpu):
        assert "nvidia.com/gpu" not in node["resources"]["requests"]
        assert "nvidia.com/gpu" not in node["resources"]["limits"]

    # Nodes share nothing but object storage: every pod has its own scratch disk, and no volume claim.
    for node, pod in ((head, cluster["headGroupSpec"]), (cpu, groups["cpu"]), (gpu, groups["gpu"])):
        assert node["image"] == head["image"]
        mounts = {mount["name"]: mount["mountPath"] for mount in node["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["template"]["spec"]["volumes"]}
        assert mounts["scratch"] == "/scratch" and "emptyDir" in volumes["scratch"]
        assert not any("persistentVolumeClaim" in volume for volume in volumes.values())
        assert {"name": "DPT_CACHE_DIR", "value": "/scratch"} in node["env"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no film bytes through the head
    for option in ("--manifest s3://", "--output s3://", "model.weights=s3://", "detector_weights=s3://"):
        assert option in " ".join(spec["entrypoint"].split()), option


def test_submit_sh_parses_and_explains_itself():
    script = JOBS / "submit.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "set -euo pipefail" in text and "ray job submit" in text

    bare = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert bare.returncode == 2 and "RAY_ADDRESS" in bare.stdout

    no_address = subprocess.run(["bash", str(script), "run"], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert no_address.returncode == 2 and "set RAY_ADDRESS" in no_address.stderr
