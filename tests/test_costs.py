"""The cost model (pipeline.costs): core-ms per frame by stage and size, and what limits a cluster."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.cluster import plan_cluster
from pipeline.config import load_settings
from pipeline.costs import frame_costs, throughput


def settings(*overrides: str):
    return load_settings(None, ["faces.detector=retinaface_mobile0.25", *overrides])


def test_costs_scale_with_pixels_and_detection_leaves_the_cpus_on_a_gpu():
    full, small = frame_costs(settings(), 1920, 1080), frame_costs(settings(), 1280, 720)
    assert full.encode / small.encode == pytest.approx(1920 * 1080 / (1280 * 720))
    assert full.probe > small.probe and full.faces > small.faces
    assert frame_costs(settings(), detect_on_gpu=True).faces < full.faces
    resnet = frame_costs(settings("faces.detector=retinaface_resnet50"))
    assert resnet.faces > 5 * full.faces  # why ResNet-50 belongs on a GPU
    assert frame_costs(settings("encode.preset=medium")).encode > full.encode  # veryfast is the default


def test_the_limit_is_the_cpus_on_a_cpu_poor_gpu_node_and_the_gpus_on_a_cpu_rich_one():
    poor = plan_cluster({"CPU": 6, "GPU": 2}, settings())
    rich = plan_cluster({"CPU": 512, "GPU": 2}, settings())
    costs = frame_costs(settings(), detect_on_gpu=True)
    limit = throughput(poor, costs, face_share=1.0).limit
    assert limit.startswith(("CPU stages", "faces pool", "encode pool"))
    assert throughput(rich, costs, face_share=1.0).limit == "restoration (2 GPUs)"
    fewer_faces = throughput(rich, costs, face_share=0.1).frames_per_s
    assert fewer_faces > throughput(rich, costs, 1.0).frames_per_s


def test_a_dry_run_prints_the_expected_speed_and_what_limits_it(demo_archive, shared_dir):
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    args = ["run", "--manifest", str(demo_archive), "--output", "unused", "--config", "configs/smoke.yaml",
            "--set", f"faces.detector_weights={weights}", "--dry-run"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "CPU core-ms per frame: probe" in result.output
    assert "expected about" in result.output and "limited by" in result.output
    assert "memory per CPU actor" not in result.output
    # actors that ask for memory: the plan says so, and one that no node's memory holds is refused
    result = CliRunner().invoke(main, [*args, "--set", "cluster.actor_memory_gb=1.5"])
    assert result.exit_code == 0 and "1.5 GiB of memory per CPU actor" in result.output, result.output
    result = CliRunner().invoke(main, [*args, "--set", "cluster.actor_memory_gb=100000"])
    assert "could not run it: cluster.actor_memory_gb=100000 GiB per CPU" in result.output, result.output


def test_the_gpu_rate_is_bench_gpus_best_bf16_row_when_measured_else_labelled_an_estimate(tmp_path):
    from pipeline.costs import gpu_restoration_rate

    table = tmp_path / "model-gpu.md"
    table.write_text("### DP-TempCoh on NVIDIA H200: precisions and batch sizes (official)\n\n"
                     "| engine | fp32 | 4 | 90.00 | 1 | 1% |\n| engine | bf16 | 1 | 120.50 | 1 | 1% |\n"
                     "| engine | bf16 | 4 | 210.25 | 1 | 1% |\n")  # fmt: skip
    assert gpu_restoration_rate(table) == (210.25, f"measured by `make bench-gpu` ({table})")
    rate, source = gpu_restoration_rate(tmp_path / "absent.md")
    assert 200 < rate < 300 and source.startswith("an estimate, not measured")
    table.write_text(table.read_text().replace("(official)", "(tiny)"))
    assert gpu_restoration_rate(table)[1].startswith("an estimate")


@pytest.mark.gpu
def test_check_gpu_passes_on_a_gpu(shared_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from pipeline import check_gpu

    out = tmp_path / "check.md"
    weights = shared_dir / "weights" / "retinaface_mobile0.25.pth"
    check_gpu.main(["--footage", str(shared_dir / "footage"), "--weights", str(weights), "--out", str(out)])
    assert "**FAIL**" not in out.read_text()
