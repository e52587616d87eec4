"""``parcae-runner senses``: k rows of top tokens per word for a trained Backpack run; other runs are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from parcae_runner.config import compose_run_config
from parcae_runner.train.runner import train


def _run(fast_overrides: list[str], arch: str) -> str:
    overrides = [o for o in fast_overrides if not o.startswith("arch=")] + [
        f"arch={arch}",
        "train.max_steps=3",
        "train.batch_size=4",
        "train.micro_batch_size=4",
        "train.val_batches=1",
        "train.val_interval=3",
    ]
    return str(train(compose_run_config(overrides)).path)


def _senses(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "parcae_runner.cli", "senses", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_senses_prints_k_rows_per_word(fast_overrides):
    run_dir = _run(fast_overrides, "backpack")
    out = _senses(run_dir, "the", "language", "--top", "5")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    k = 4  # the debug size's n_senses
    assert len(lines) == 2 * k
    for i, line in enumerate(lines):
        word = "the" if i < k else "language"
        assert line.startswith(word) and f"sense {i % k}: " in line
        assert len(line.split(": ", 1)[1].split("' '")) == 5

    other = _senses(_run(fast_overrides, "gpt2"), "the")
    assert other.returncode == 2 and "a backpack run (this one is gpt2)" in other.stderr
