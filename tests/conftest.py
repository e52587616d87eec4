"""Shared fixtures: one small tokenized corpus for the whole session, and fast run overrides; the system markers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# under PARCAE_REQUIRE_SYSTEM_TESTS=1 (CI) a skipped system test fails the run: see tests/require_system.py
pytest_plugins = ["tests.require_system"]

# Triton kernels on CPU run only under the interpreter, and triton.jit reads this when a kernel is
# decorated: it must be set before any test module imports triton (transformers may import it early)
os.environ["TRITON_INTERPRET"] = "1"

# a test never talks to wandb's servers, whatever the environment says
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("WANDB_SILENT", "true")

# nor to the Hugging Face hub: huggingface_hub reads these once, when first imported, so the package's own offline
# default (set before it imports datasets) comes too late once any earlier test has imported transformers, and
# a test then waits for the network's timeouts (about 20 s each) in a suite that downloads nothing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# The systems a fixture brings up, as the markers every test using it gets (fixtures a test uses through other
# fixtures count): `-m "not slurm"` leaves out every test that needs the cluster, and a new test cannot forget its
# marker. A test that needs a system without such a fixture carries the marker itself (`pytest --markers` lists them).
SYSTEM_MARKERS: dict[str, tuple[str, ...]] = {
    "slurm_cluster_session": ("slurm",),
    # DDP over gloo with ranks on two hosts: several processes that need the cores to themselves
    "two_host_cluster": ("slurm", "multiprocess"),
    # a run trained by 2 FSDP ranks over gloo on this machine (tests/export/test_fsdp_export.py)
    "fsdp_two_rank_run": ("multiprocess",),
    "docker_engine": ("docker",),
    "chromium": ("browser",),
}


# Under pytest-xdist (`make test` runs two workers) every test of these markers runs on one worker, one at a time:
# they share the one-node cluster's queue and the Docker engine. Tests with several ranks of their own (multiprocess)
# are safe beside others, only slower, so they go wherever a worker is free
SERIAL_MARKERS = ("slurm", "docker")


# tryfirst: the markers must be on the items before `-m` deselects by them (and before xdist reads its groups)
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in SYSTEM_MARKERS.keys() & set(getattr(item, "fixturenames", ())):
            for marker in SYSTEM_MARKERS[fixture]:
                item.add_marker(marker)
        if any(item.get_closest_marker(name) for name in SERIAL_MARKERS):
            item.add_marker(pytest.mark.xdist_group("system"))


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


def as_overrides(values: dict[str, object]) -> list[str]:
    """Hydra overrides ``key=value``, one per entry of ``values``, in its order."""
    return [f"{key}={value}" for key, value in values.items()]


def debug_overrides(data_cache: Path, results: Path) -> list[str]:
    """A debug Pythia on a small-vocab copy of the embedded corpus, no loggers, results in ``results``."""
    return [
        "arch=pythia",
        "size=debug",
        "data.vocab_size=512",
        "data.seq_len=64",
        f"data.cache_dir={data_cache}",
        f"results_dir={results}",
        "train.progress=false",
        "logger=none",
    ]


@pytest.fixture
def fast_overrides(data_cache: Path, tmp_path: Path) -> list[str]:
    return debug_overrides(data_cache, tmp_path / "results")
