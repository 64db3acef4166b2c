# The project's verbs. `make setup` then `make test` on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed only when the venv has none, so a user's own torch build is never replaced.
# pip byte-compiles what it installs and compileall our own modules: where PYTHONDONTWRITEBYTECODE is set
# (as on our CI machines), nothing else would, and every Ray worker would compile torch from source.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup test lint bench bench-pipeline bench-archive bench-cost bench-gpu check-gpu demo clean

setup:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[test]'
	$(PY) -m compileall -q pipeline model tests

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check pipeline model tests

# Benchmarks print markdown sections and keep them in bench-results/; BENCHMARKS.md collects them.
SHARED ?= ../shared

bench:
	$(PY) -m pipeline.bench_transfer --footage $(SHARED)/footage --weights $(SHARED)/weights/retinaface_mobile0.25.pth \
		--out bench-results/transfer-cpu.md
	$(PY) -m model.bench --model official --frames 16 --out bench-results/model-cpu.md
	$(PY) -m pipeline.faces.bench --weights $(SHARED)/weights/retinaface_mobile0.25.pth \
		--footage $(SHARED)/footage --frames 32 --out bench-results/faces-cpu.md
	$(PY) -m pipeline.faces.bench_stability --footage $(SHARED)/footage --out bench-results/stability-cpu.md

# Long (about half an hour on 2 cores): 1- and 4-minute 720p films through the whole pipeline.
bench-pipeline:
	$(PY) -m pipeline.bench --footage $(SHARED)/footage --weights $(SHARED)/weights/retinaface_mobile0.25.pth \
		--minutes 1 4 --out bench-results/pipeline-cpu.md

# The driver's cost per video at 1k, 10k and 100k manifest rows (start-up on a local moto S3, catalog
# bytes and compaction memory); about 10 minutes on 2 cores.
bench-archive:
	$(PY) -m pipeline.bench_archive --rows 1000 10000 100000 \
		--weights $(SHARED)/weights/retinaface_mobile0.25.pth --out bench-results/archive.md

# CPU core-ms per source frame of every CPU stage, libx264 presets (with PSNR and VMAF), Ray's overhead
# and the cores one GPU needs, on 720p and 1080p films (about 15 minutes on 2 cores).
bench-cost:
	$(PY) -m pipeline.bench_cost --footage $(SHARED)/footage --weights $(SHARED)/weights/retinaface_mobile0.25.pth \
		--out bench-results/cost-cpu.md

bench-gpu:
	$(PY) -m model.bench_gpu --out bench-results/model-gpu.md

# On a GPU machine, a few minutes: the network's precisions, detection on the GPU against the CPU, a
# smoke run with both on the GPU, a real out-of-memory back-off, NVENC. Tables for BENCHMARKS.md.
check-gpu:
	$(PY) -m pipeline.check_gpu --footage $(SHARED)/footage --weights $(SHARED)/weights/retinaface_mobile0.25.pth \
		--out bench-results/check-gpu.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The demo archive, two short films from the shared footage (demo/archive.parquet, film_a.mp4, film_b.mp4),
# restored with the smoke settings into demo/out (a few minutes on 2 CPU cores), then its QC report,
# whose index.html path is printed last.
FOOTAGE ?= ../shared/footage
demo:
	@if [ -d "$(FOOTAGE)" ]; then \
		$(PY) -m pipeline.demo "$(FOOTAGE)" demo && \
		$(PY) -m pipeline.cli run --manifest demo/archive.parquet --output demo/out --config configs/smoke.yaml \
			--set faces.detector_weights=$(SHARED)/weights/retinaface_mobile0.25.pth && \
		$(PY) -m pipeline.cli report demo/out; \
	else echo "$(FOOTAGE) is absent: no demo archive built"; fi
