"""Checkpoints that prove themselves: a corrupt newest checkpoint is detected at resume and the one before it used;
a full disk while checkpointing stops the run with earlier checkpoints intact."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parcae_runner.runs import RunDirectory
from parcae_runner.runs.checkpoints import verify_checkpoint


def _cmd(overrides: list[str], run_name: str) -> list[str]:
    return [sys.executable, "-m", "parcae_runner.cli", "train", *overrides, f"run_name={run_name}"]


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(fast_overrides: list[str]) -> None:
    overrides = [
        *fast_overrides,
        "train.max_steps=60",
        "train.checkpoint.schedule=list",
        "train.checkpoint.steps=[10,20]",
        "train.val_interval=10",
    ]
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).split("=", 1)[1])
    subprocess.run(_cmd(overrides, "reference"), check=True, capture_output=True)
    proc = subprocess.Popen(_cmd(overrides, "torn"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    newest = results / "single" / "torn" / "checkpoints" / "checkpoint-20"
    deadline = time.time() + 120
    while not (newest / "meta.json").exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint-20 to corrupt"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = newest / "trainer_state.ckpt"
    with open(state, "r+b") as f:  # what a torn write on a crashed node leaves: the tail missing
        f.truncate(state.stat().st_size // 2)
    assert "bytes" in (verify_checkpoint(newest) or "")

    rerun = subprocess.run(_cmd(overrides, "torn"), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"warning: {newest} is corrupt (trainer_state.ckpt has" in rerun.stderr
    run = RunDirectory(newest.parents[1]).read_run()
    assert run["status"] == "done" and [h["start_step"] for h in run["attempt_history"]] == [10]
    ref = load_file(results / "single" / "reference" / "checkpoints" / "checkpoint-60" / "model.safetensors")
    got = load_file(newest.parent / "checkpoint-60" / "model.safetensors")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert verify_checkpoint(newest) is None  # step 20 was trained again and rewritten whole


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MB tmpfs: room for a few debug checkpoints, not for all of them."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    fast_overrides: list[str], small_disk: Path
) -> None:
    overrides = [o for o in fast_overrides if not o.startswith("results_dir=")] + [
        f"results_dir={small_disk}",
        "train.max_steps=200",
        "train.checkpoint.schedule=interval",
        "train.checkpoint.every=5",
        "train.checkpoint.keep_resume_state=200",  # keep every optimizer state: the disk must fill
    ]
    result = subprocess.run(_cmd(overrides, "full"), capture_output=True, text=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("parcae-runner: run stopped: the disk under") and "is full" in last
    assert "is intact: free space, then run the same command again to resume" in last
    rd = RunDirectory(small_disk / "single" / "full")
    checkpoints = sorted(rd.checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints and not list(rd.checkpoints.glob(".tmp-*"))
    assert all(verify_checkpoint(p) is None for p in checkpoints)
    record = rd.read_run()
    assert record.status == "failed" and "is full" in record["error"]
    shutil.rmtree(rd.path / "wandb", ignore_errors=True)
