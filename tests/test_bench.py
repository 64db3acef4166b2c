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
    args = ["--device", "cpu", "--model", "tiny", "--batches", "2", "--clip-frames", "8"]  # one window a clip
    bench_gpu.main([*args, "--out", str(out)])
    text = out.read_text()
    assert "| upstream schedule | fp32 | 1 |" in text
    assert "| engine | bf16 | 2 |" in text
    assert "| bf16 |" in text.split("token agreement")[1]


def test_cost_benchmark_measures_every_cpu_stage(shared_dir, tmp_path):
    """`make bench-cost` on a 20-frame 720p film (no Ray run, one preset): every table is there and the
    stages' costs are positive CPU times."""
    import re

    from pipeline import bench_cost

    out = tmp_path / "cost.md"
    bench_cost.main(["--footage", str(shared_dir / "footage"),
                     "--weights", str(shared_dir / "weights" / "retinaface_mobile0.25.pth"),
                     "--shot-frames", "4", "--sizes", "720p", "--presets", "ultrafast", "--no-ray",
                     "--detector-frames", "8", "--work", str(tmp_path / "work"),
                     "--out", str(out)])  # fmt: skip
    text = out.read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| 720p |") and line.count("|") == 13]
    costs = [float(cell) for cell in re.findall(r"\| ([0-9.]+)(?= \|)", row)[:9]]
    assert all(cost > 0 for cost in costs), row
    output_kbps, plain_kbps = map(float, row.split("|")[-2].split(","))
    assert output_kbps > 0 and plain_kbps > 0, row
    assert "estimate, not measured" in text or "measured by `make bench-gpu`" in text
    # each stage measured warm; what an actor's first clip costs more is reported apart
    (first,) = re.findall(r"720p: faces ([0-9.-]+), paste \+ encode ([0-9.-]+)", text)
    assert all(abs(float(value)) < 60 for value in first), first
    assert "| 720p | " in text.split("The detector alone")[1]
    (medium,) = [line for line in text.splitlines() if line.startswith("| 720p | medium |")]
    cells = [float(cell) for cell in re.findall(r"\| ([0-9.]+)(?= \|)", medium)]
    assert len(cells) == 4 and all(cell > 0 for cell in cells), medium
    assert cells[2] < cells[1], medium  # detection off the CPU costs less than on it


def test_stability_benchmark_times_each_part_in_its_stage(shared_dir, tmp_path):
    from click.testing import CliRunner

    from pipeline.faces import bench_stability

    out = tmp_path / "stability-cpu.md"
    args = ["--footage", str(shared_dir / "footage"), "--frames", "12", "--clips", "1", "--out", str(out)]
    result = CliRunner().invoke(bench_stability.main, args)
    assert result.exit_code == 0, result.output
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "core-ms" not in line]
    assert [row.split(" | ")[1] for row in rows] == ["faces", "restore", "restore", "encode", "-"]
    assert all(float(row.split(" | ")[2]) > 0 for row in rows)
