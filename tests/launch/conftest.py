"""The local one-node Slurm cluster, started once per session and left running for the next tests and sessions."""

from __future__ import annotations

import os

import pytest

from parcae_runner.launch import local_cluster


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
