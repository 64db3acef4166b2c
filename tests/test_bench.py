"""The benchmark scripts run their code paths (tiny network, CPU), so `make bench*` does not rot."""
from __future__ import annotations

from model import bench, bench_gpu


def test_cpu_benchmark_reports_speedup_and_equality(tmp_path, capsys):
    out = tmp_path / "model-cpu.md"
    bench.main(["--model", "tiny", "--frames", "9", "--out", str(out)])
    text = out.read_text()
    assert "speed-up of the engine" in text
    # the engine's schedule is upstream's: in the same layout its outputs are the same bits
    assert "engine vs upstream's schedule in the same layout: bit-identical outputs" in text


def test_gpu_benchmark_code_paths_run_on_the_cpu(tmp_path):
    out = tmp_path / "model-gpu.md"
    args = ["--device", "cpu", "--model", "tiny", "--batches", "1", "2", "--clip-frames", "12"]
    bench_gpu.main([*args, "--out", str(out)])
    text = out.read_text()
    assert "| upstream schedule | fp32 | 1 |" in text
    assert "| engine | bf16 | 2 |" in text
    assert "| bf16 |" in text.split("token agreement")[1]
