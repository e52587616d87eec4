# parcae-runner: every target that needs Python depends on `setup`, which is idempotent.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# where `make demo` writes its run directories
RESULTS ?= results

# sweeps: make sweep-parc [VARIANT=demo] [CLUSTER=slurm_local] [OVERRIDES="train.max_steps=50"]
CLUSTER ?= local
VARIANT ?=
OVERRIDES ?=

.PHONY: help setup test test-quick demo report demo-slurm slurm-up slurm-down slurm-two-hosts-up slurm-two-hosts-down lint format bench bench-gpu clean \
	lock lock-check docker-build docker-push
.DEFAULT_GOAL := help

## this list: each target with the `## ` line above it (`make` alone prints it)
help:
	@echo "usage: make <target> [VAR=value ...]"
	@awk '/^## /{ doc = substr($$0, 4); next } \
		/^[a-z][a-z0-9%-]*:/{ if (doc != "") { t = $$1; sub(/:.*/, "", t); sub(/%/, "<study>", t); \
			printf "  %-18s %s\n", t, doc }; doc = ""; next } \
		/^\t/{ doc = "" }' $(MAKEFILE_LIST)

## create .venv and install the package with its dev tools (idempotent; every Python target depends on it)
setup: $(STAMP)

# torch is pinned and installed first so that a CPU machine does not pull CUDA wheels;
# the package's own `torch>=2.4` is then already satisfied. The other dependencies are held to the image's lock
# (its pins without hashes, as pip constraints), so the tests run what the image ships, not what PyPI serves today.
# Nothing runs at interpreter start: a .venv made when a .pth registered the lm-eval model loses that file here.
$(STAMP): pyproject.toml docker/requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	grep -v -- '--hash=' docker/requirements.lock | sed 's/ *\\$$//' > $(VENV)/lock-constraints.txt
	$(BIN)/python -m pip install --quiet -e ".[dev]" --constraint $(VENV)/lock-constraints.txt
	rm -f $(VENV)/lib/python*/site-packages/parcae_runner_lm_eval.pth
	touch $(STAMP)

# two pytest-xdist workers: the system tests (Slurm, Docker, several ranks) one at a time on one of them
# (tests/conftest.py SERIAL_MARKERS), the rest spread over both
## the full suite (CI runs it after make lint)
test: setup
	$(BIN)/python -m pytest -q -ra --durations=25 -n 2 --dist loadgroup

## the inner loop: no system service (Slurm, Docker, a browser, several ranks, a GPU) and no long training
test-quick: setup
	$(BIN)/python -m pytest -q -x -n 2 -m "not (slurm or docker or browser or multiprocess or gpu or slow)"

## the Parc demo grid (pythia, mamba, rwkv4 x 2 seeds, debug size) trained locally, then its report
demo: setup
	$(BIN)/parcae-runner sweep sweeps/parc.yaml --variant demo cluster=local results_dir=$(RESULTS)
	$(BIN)/parcae-runner status parc-demo --results $(RESULTS)
	$(BIN)/parcae-runner report parc-demo --results $(RESULTS)

## an HTML report of a sweep: make report SWEEP=parc-demo
SWEEP ?= parc-demo
report: setup
	$(BIN)/parcae-runner collect $(SWEEP) --results $(RESULTS)
	$(BIN)/parcae-runner report $(SWEEP) --results $(RESULTS)

## the Slurm path on this machine: start the one-node cluster, run the parc demo sweep as a job array
demo-slurm: setup slurm-up
	$(BIN)/parcae-runner sweep sweeps/parc.yaml --variant demo cluster=slurm_local
	@echo "watch it with: $(BIN)/parcae-runner status parc-demo"

## start the local one-node Slurm cluster (as root; installs munge + slurm-wlm with apt-get if missing)
slurm-up: setup
	PYTHON=$(BIN)/python slurm/local_cluster/start

## stop the local one-node Slurm cluster
slurm-down: setup
	PYTHON=$(BIN)/python slurm/local_cluster/stop

## start the two-host test cluster (as root: network namespaces; clients need SLURM_CONF=/etc/slurm-two-hosts/slurm.conf)
slurm-two-hosts-up: setup
	$(BIN)/python slurm/local_cluster/two_hosts.py start

## stop the two-host test cluster and remove its namespaces
slurm-two-hosts-down: setup
	$(BIN)/python slurm/local_cluster/two_hosts.py stop

## plan + submit sweeps/<study>.yaml, e.g. make sweep-parc VARIANT=demo CLUSTER=slurm_local
sweep-%: setup
	$(BIN)/parcae-runner sweep sweeps/$*.yaml $(if $(VARIANT),--variant $(VARIANT)) cluster=$(CLUSTER) $(OVERRIDES)

## plan only: make plan-parc CLUSTER=slurm_a100
plan-%: setup
	$(BIN)/parcae-runner plan sweeps/$*.yaml $(if $(VARIANT),--variant $(VARIANT)) cluster=$(CLUSTER) $(OVERRIDES)

# the studies by name (the pattern rules above do the work); the Parcae studies wait for their
# runs and end with the table of final loss against R (or size) per FLOP budget
sweep-parc:
plan-parc:
sweep-recurrence: setup
	$(BIN)/parcae-runner sweep sweeps/recurrence.yaml $(if $(VARIANT),--variant $(VARIANT)) \
		cluster=$(CLUSTER) --wait $(OVERRIDES)
sweep-flops: setup
	$(BIN)/parcae-runner sweep sweeps/flops.yaml $(if $(VARIANT),--variant $(VARIANT)) \
		cluster=$(CLUSTER) --wait $(OVERRIDES)
plan-recurrence:
plan-flops:

## ruff check + format check, the import layers (lint-imports, pyproject's contract), mypy over the whole package
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## ruff: fix what it can, format everything
format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## benchmarks; JSON to bench/out/ (sweep submission needs Slurm: started here if missing)
bench: setup slurm-up
	$(BIN)/python bench/train_throughput.py --out bench/out/train_throughput.json
	$(BIN)/python bench/sweep_submit.py --out bench/out/sweep_submit.json
	$(BIN)/python bench/kernels.py --out bench/out/kernels.json
	$(BIN)/python bench/collect.py --out bench/out/collect.json
	$(BIN)/python bench/data.py --out bench/out/data.json
	$(BIN)/python bench/compile.py --out bench/out/compile.json
	$(BIN)/python bench/peers.py --out bench/out/peers.json
	$(BIN)/python bench/fsdp.py --out bench/out/fsdp.json
	$(BIN)/python bench/fsdp_memory.py --out bench/out/fsdp_memory.json

## the image's dependency lock, from pyproject.toml (torch and triton come from the base image; see docker/)
# resolved against PyPI as it was at LOCK_DATE, for every Python the package supports: bump the date to update.
# --upgrade: resolve afresh rather than prefer the pins already in $(LOCK) (uv's default), so that the committed
# lock is what a fresh resolution gives, which is what lock-check compares
LOCK ?= docker/requirements.lock
LOCK_DATE ?= 2026-11-20T00:00:00Z
lock: setup
	$(BIN)/uv pip compile pyproject.toml docker/build-requirements.in --universal --generate-hashes \
		--override docker/lock-overrides.txt --exclude-newer $(LOCK_DATE) --upgrade --no-config \
		--index-url https://pypi.org/simple --custom-compile-command "make lock" --quiet --output-file $(LOCK)

## check the lock: offline (pins, hashes, image label), then that `make lock` reproduces it from PyPI today.
# Not part of `make test`: PyPI can gain files dated before LOCK_DATE after the lock was made.
lock-check: setup
	$(BIN)/python docker/check_lock.py
	@fresh=$$(mktemp) && trap 'rm -f "$$fresh"' EXIT && \
	$(MAKE) --no-print-directory lock LOCK="$$fresh" && \
	if diff -u docker/requirements.lock "$$fresh"; then \
		echo "docker/requirements.lock is what \`make lock\` resolves from PyPI today (LOCK_DATE=$(LOCK_DATE))"; \
	else \
		echo "docker/requirements.lock is stale: PyPI resolves the diff above for LOCK_DATE=$(LOCK_DATE)." >&2; \
		echo "Update it with \`make lock\` (move LOCK_DATE to take newer releases), check it with \`make lock-check\`, commit it." >&2; \
		exit 1; \
	fi

## the image, tagged with the commit (-dirty for uncommitted changes) and latest; BASE_IMAGE= to change the base
IMAGE_NAME ?= parcae-runner
BASE_IMAGE ?=
GIT_DIRTY = $(if $(shell git status --porcelain --untracked-files=no 2>/dev/null),-dirty)
GIT_COMMIT = $(or $(shell git rev-parse HEAD 2>/dev/null),unknown)$(GIT_DIRTY)
IMAGE_TAG = $(or $(shell git rev-parse --short HEAD 2>/dev/null),unknown)$(GIT_DIRTY)
# the image's label parcae.requirements-lock.sha256; the Dockerfile checks it against the lock it copies
IMAGE_LOCK_SHA256 = $(firstword $(shell sha256sum docker/requirements.lock))
docker-build:
	docker build -f docker/Dockerfile $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--build-arg GIT_COMMIT=$(GIT_COMMIT) \
		--build-arg LOCK_SHA256=$(IMAGE_LOCK_SHA256) \
		-t $(IMAGE_NAME):$(IMAGE_TAG) -t $(IMAGE_NAME):latest .
	@echo "built $(IMAGE_NAME):$(IMAGE_TAG) = $$(docker image inspect --format '{{.Id}}' $(IMAGE_NAME):$(IMAGE_TAG))"

## push the commit's image: make docker-push REGISTRY=registry.example.org/team; prints the pinned reference
docker-push:
	@test -n "$(REGISTRY)" || { echo "usage: make docker-push REGISTRY=<registry>/<namespace>"; exit 2; }
	@case "$(IMAGE_TAG)" in *-dirty) echo "refusing to push $(IMAGE_TAG): commit your changes first"; exit 2;; esac
	docker tag $(IMAGE_NAME):$(IMAGE_TAG) $(REGISTRY)/$(IMAGE_NAME):$(IMAGE_TAG)
	docker tag $(IMAGE_NAME):$(IMAGE_TAG) $(REGISTRY)/$(IMAGE_NAME):latest
	docker push $(REGISTRY)/$(IMAGE_NAME):$(IMAGE_TAG)
	docker push $(REGISTRY)/$(IMAGE_NAME):latest
	@echo "pinned: $$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' \
		$(REGISTRY)/$(IMAGE_NAME):$(IMAGE_TAG) | grep '^$(REGISTRY)/$(IMAGE_NAME)@' | head -1)"

# MFU per architecture at 160m (bf16, with and without torch.compile), Triton kernels against their references and
# mamba_ssm/fla, peak memory, and the MFU of a 1B LLaMA under FSDP; JSON to bench/results/ named by the device.
# On a CPU-only machine it says so, exits 0.
## on a lent GPU: MFU, kernels, peak memory per architecture and a 1B LLaMA under FSDP (bench/gpu.py; a CPU: exits 0)
bench-gpu: setup
	$(BIN)/python bench/gpu.py --out-dir bench/results

## remove .venv, the caches and bench/out
clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .import_linter_cache bench/out
