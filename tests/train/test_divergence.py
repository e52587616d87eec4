"""A diverging run skips its non-finite steps, then stops as ``diverged`` naming its last good checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory

# each test trains until its guard stops the run (15 to 20 s on a busy 2-core box)
pytestmark = pytest.mark.slow


def _train(overrides: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "train", *overrides], capture_output=True, text=True
    )


def _run_dir(overrides: list[str]) -> RunDirectory:
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).split("=", 1)[1])
    return RunDirectory(results / "single" / "pythia-debug-s0")


def test_non_finite_steps_are_skipped_then_the_run_stops_diverged(fast_overrides: list[str]) -> None:
    # an absurd learning rate overflows the weights within a few steps; every later gradient is NaN
    args = ["train.max_steps=40", "train.lr=1e30", "train.warmup_steps=0", "train.log_interval=1"]
    result = _train([*fast_overrides, *args, "train.divergence.max_skipped_in_a_row=3"])
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("parcae-runner: run stopped: 3 optimizer steps in a row had a non-finite loss")
    assert "Traceback" not in result.stderr
    rd = _run_dir(fast_overrides)
    record = rd.read_run()
    assert record.status == "diverged" and "last good checkpoint: checkpoint-" in record["error"]
    skipped = [r["train/skipped_steps"] for r in rd.read_metrics() if "train/skipped_steps" in r]
    assert skipped and skipped[-1] >= 2 and record["step"] < 40
    # the skipped steps left the weights alone: no NaN reached the newest checkpoint
    import torch
    from safetensors.torch import load_file

    newest = sorted(rd.checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    weights = load_file(str(next(newest.glob("*.safetensors"))))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_the_loss_guardrail_stops_the_run(fast_overrides: list[str]) -> None:
    guard = ["train.divergence.loss_guardrail=1.0", "train.divergence.guardrail_after_steps=2"]
    result = _train([*fast_overrides, "train.max_steps=20", *guard])
    assert result.returncode == 1
    assert "is above train.divergence.loss_guardrail=1" in result.stderr.strip().splitlines()[-1]
    record = _run_dir(fast_overrides).read_run()
    assert record.status == "diverged" and record["step"] == 3
