"""The energy of an attempt killed with SIGKILL is not lost: it was flushed while training and the next attempt
counts it in run.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory


@pytest.mark.slow
def test_sigkilled_attempt_energy_is_summed(fast_overrides: list[str]) -> None:
    overrides = [o for o in fast_overrides if o != "logger=none"] + [
        "logger.wandb=false",
        "logger.codecarbon=true",
        "logger.measure_power_secs=1",
        "logger.energy_flush_secs=1",
        "train.max_steps=300",
        "train.checkpoint.schedule=list",
        "train.checkpoint.steps=[5]",
    ]
    cmd = [sys.executable, "-m", "parcae_runner.cli", "train", *overrides]
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).split("=", 1)[1])
    rd = RunDirectory(results / "single" / "pythia-debug-s0")
    flushed = rd.path / "energy" / "attempt-1-node0.json"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180

    def flushed_energy() -> float:
        # The file exists from the attempt's first moment (with 0 kWh); wait for a flush that measured something.
        return json.loads(flushed.read_text())["energy_kwh"] if flushed.exists() else 0.0

    while not (flushed_energy() > 0 and (rd.checkpoints / "checkpoint-5" / "meta.json").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.time() < deadline, "no energy flushed within 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_energy = json.loads(flushed.read_text())["energy_kwh"]
    assert killed_energy > 0 and rd.read_run().status == "running"

    subprocess.run(cmd, check=True, capture_output=True)
    run = rd.read_run()
    history = {h["attempt"]: h for h in run.attempt_history}
    assert run.status == "done" and sorted(history) == [1, 2]
    assert history[1]["status"] == "killed" and history[1]["energy_kwh"] == pytest.approx(killed_energy)
    assert history[2]["energy_kwh"] > 0
    assert run["energy_kwh"] == pytest.approx(history[1]["energy_kwh"] + history[2]["energy_kwh"])
    assert run["co2_kg"] == pytest.approx(history[1]["co2_kg"] + history[2]["co2_kg"])
