# parcae-runner: every target that needs Python depends on `setup`, which is idempotent.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# where `make demo` writes its run directories
RESULTS ?= results

.PHONY: setup test test-quick demo lint format bench clean

setup: $(STAMP)

# torch is pinned and installed first so that a CPU machine does not pull CUDA wheels;
# the package's own `torch>=2.4` is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## the full suite (what CI runs)
test: setup
	$(BIN)/python -m pytest -q -ra

## the inner loop: everything but the slow end-to-end tests
test-quick: setup
	$(BIN)/python -m pytest -q -m "not slow" -x

## train a debug Pythia on the embedded corpus and print where its run directory is
demo: setup
	$(BIN)/parcae-runner train arch=pythia size=debug data=embedded sweep=demo \
		train.max_steps=300 results_dir=$(RESULTS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## throughput benchmarks; JSON to bench/out/
bench: setup
	$(BIN)/python bench/train_throughput.py --out bench/out/train_throughput.json

clean:
	rm -rf $(VENV) .cache .pytest_cache bench/out
