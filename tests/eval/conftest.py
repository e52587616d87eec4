"""One small trained Pythia run for the evaluation tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parcae_runner.config import compose_run_config
from parcae_runner.train.runner import train
from tests.conftest import debug_overrides

STEPS = 40


def eval_overrides(data_cache: Path, results: Path, **extra: str) -> list[str]:
    return [
        *debug_overrides(data_cache, results),
        f"train.max_steps={STEPS}",
        "train.batch_size=8",
        "train.micro_batch_size=8",
        "train.val_interval=20",
        "train.val_batches=4",
        *(f"{k}={v}" for k, v in extra.items()),
    ]


@pytest.fixture(scope="session")
def trained_run(data_cache, tmp_path_factory) -> Path:
    """A debug Pythia trained 40 steps; checkpoints on the Pythia schedule: 0, 1, 2, 4, 8, 16, 32, 40."""
    results = tmp_path_factory.mktemp("eval-results")
    return train(compose_run_config(eval_overrides(data_cache, results))).path
