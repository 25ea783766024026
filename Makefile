# `make test` and `make demo` bootstrap .venv from nothing, then run.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench sweep clean

# torch first, pinned: the CPU wheel 2.13.0 lies on this machine's disk, and an open range
# would pull a multi-GB CUDA build. Everything else resolves around it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check dxray tests benchmarks
	$(BIN)/ruff format --check dxray tests benchmarks
	$(BIN)/lint-imports

test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/dxray demo

bench: $(STAMP)
	$(BIN)/dxray bench engine

# The evaluation over random toy worlds (docs/EVALUATION.md, "The sweep"): hours on a CPU,
# resumable (every world's result is cached in sweeps/seed-1/world-<k>/).
sweep: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/dxray sweep pipelines/toy.yaml --worlds 8 --seed 1 --scatter docs/sweep-calibration.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
