"""Bad input that needs more than a command line: a size the architecture lacks, a resume with another config.
The one-line cases of every command are the table in tests/test_bad_input_table.py."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parcae_runner.cli", "train", *args], capture_output=True, text=True)


def test_size_the_architecture_lacks(fast_overrides, monkeypatch):
    from parcae_runner.config import ConfigErrors, compose_run_config
    from parcae_runner.config.validate import validate_run_config
    from parcae_runner.models import ARCHITECTURES

    cfg = compose_run_config(fast_overrides)
    monkeypatch.setitem(ARCHITECTURES["pythia"].sizes, "debug", None)
    monkeypatch.delitem(ARCHITECTURES["pythia"].sizes, "debug")
    with pytest.raises(ConfigErrors, match=r"size=debug: pythia has sizes: 14m"):
        validate_run_config(cfg)


@pytest.mark.slow
def test_resuming_with_another_config_is_refused(fast_overrides):
    first = run_cli(*fast_overrides, "train.max_steps=3", "train.val_batches=0")
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_cli(*fast_overrides, "train.max_steps=3", "train.val_batches=0", "train.lr=0.5")
    assert second.returncode == 2
    assert "already holds a run with a different config (differs in: train.lr)" in second.stderr
