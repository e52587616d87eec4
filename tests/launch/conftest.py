"""The local one-node Slurm cluster, started once per session and left running for the next tests and sessions."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

# development infrastructure beside its start/stop scripts, not part of the package: loaded by path
CLUSTER_PY = Path(__file__).resolve().parents[2] / "slurm" / "local_cluster" / "cluster.py"


def load_by_path(name: str, path: Path) -> ModuleType:
    """The module at ``path`` as ``name`` (once: a second call returns the loaded one)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    # registered before it runs, as an import would: its dataclasses look their module up in sys.modules
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


local_cluster = load_by_path("local_cluster", CLUSTER_PY)


@pytest.fixture(scope="session")
def slurm_cluster() -> local_cluster.ClusterInfo:
    """Start (or find) the local cluster; skip only where it cannot be had: not root, or Slurm not installable.

    It is not stopped afterwards: starting it again costs a few seconds, and a developer may be using it.
    """
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (apt-get, /etc/slurm, daemons)")
    try:
        return local_cluster.start()
    except local_cluster.SlurmInstallError as e:
        pytest.skip(f"Slurm is not installed and apt-get cannot install it: {e}")


@pytest.fixture
def small(tmp_path, data_cache) -> dict[str, object]:
    """Fixed overrides for tiny, fast runs with results under tmp_path."""
    return {
        "results_dir": str(tmp_path / "results"),
        "data.cache_dir": str(data_cache),
        "data.vocab_size": 512,
        "data.seq_len": 32,
        "train.batch_size": 8,
        "train.micro_batch_size": 8,
        "train.val_interval": 10,
        "train.val_batches": 2,
        "train.log_interval": 5,
        "logger.wandb": "false",
        "logger.measure_power_secs": 1,
    }
