"""Exact resume: a run killed with SIGKILL after a checkpoint and restarted with the same
command ends bit-identical to an uninterrupted run (fp32, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parcae_runner.runs import RunDirectory
from parcae_runner.train.metrics import MEASURED_METRICS

TIMING_KEYS = MEASURED_METRICS
# killed after checkpoint-20, resumed to the end: through validations, Muon's momentum warm-up (30 steps) and the
# WSD cooldown (its second half)
MAX_STEPS = 80


def command(overrides: list[str], run_name: str) -> list[str]:
    return [sys.executable, "-m", "parcae_runner.cli", "train", *overrides, f"run_name={run_name}"]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, recipe",
    [
        ("pythia", []),
        # its per-sequence depths must repeat after resume (R = 4, not Parcae's 8, to keep the test short)
        ("parcae", ["arch.mean_recurrence=4", "arch.mean_backprop_depth=2"]),
        # Muon's momentum and second moments, its update counter (warm-up, decay) and the WSD schedule
        (
            "parcae",
            [
                "arch.mean_recurrence=4",
                "arch.mean_backprop_depth=2",
                "train.optimizer=muon",
                "train.schedule=wsd",
                "train.muon.momentum_warmup_steps=30",
            ],
        ),
    ],
    ids=["pythia", "parcae", "parcae-muon-wsd"],
)
def test_sigkill_then_rerun_matches_uninterrupted(arch, recipe, fast_overrides, tmp_path):
    overrides = (
        [o for o in fast_overrides if not o.startswith("arch=")]
        + recipe
        + [
            f"arch={arch}",
            f"train.max_steps={MAX_STEPS}",
            "train.batch_size=16",
            "train.micro_batch_size=8",  # 2 accumulation steps
            "train.checkpoint.schedule=list",
            "train.checkpoint.steps=[20]",
            "train.val_interval=10",
            "train.log_interval=5",
            "logger.codecarbon=true",
            "logger.measure_power_secs=1",
        ]
    )
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).split("=", 1)[1])
    subprocess.run(command(overrides, "reference"), check=True, capture_output=True)

    proc = subprocess.Popen(command(overrides, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = results / "single" / "killed" / "checkpoints" / "checkpoint-20" / "meta.json"
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint-20 within 120 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    killed = RunDirectory(results / "single" / "killed")
    assert killed.read_run()["status"] == "running"  # SIGKILL leaves no chance to write anything
    assert not (killed.checkpoints / f"checkpoint-{MAX_STEPS}").exists(), "the run finished before it could be killed"

    subprocess.run(command(overrides, "killed"), check=True, capture_output=True)
    reference = RunDirectory(results / "single" / "reference")

    ref_w = load_file(reference.checkpoints / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
    res_w = load_file(killed.checkpoints / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
    assert ref_w.keys() == res_w.keys()
    for name in ref_w:
        assert torch.equal(ref_w[name], res_w[name]), name
    assert without_timing(killed.read_metrics()) == without_timing(reference.read_metrics())

    run = killed.read_run()
    assert run["status"] == "done" and run["attempts"] == 2
    # the killed attempt left no record of its own (only, when it lived past a flush, its energy as "killed")
    assert [h["start_step"] for h in run["attempt_history"] if h["status"] != "killed"] == [20]
    assert run["final_val_loss"] == reference.read_run()["final_val_loss"]
