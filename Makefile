# The two set-up commands. Each creates .venv when missing and installs into it.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test test-fast lint bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned, so nothing later can pull a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-build-isolation "deepspeed==0.19.8"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/chexbench demo --output results/demo

# The whole suite, lint first (CI runs this).
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# Everything but the tests marked slow (end-to-end runs in fresh processes, DeepSpeed).
test-fast: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	for b in bench/bench_engine.py bench/bench_adapters.py bench/bench_stats.py bench/bench_judge.py bench/bench_train_query_cache.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
