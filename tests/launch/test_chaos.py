"""Chaos on the real local Slurm: 10 runs, each interrupted at a moment drawn from a seed (SIGKILL of the whole job,
`scancel`, or the SIGUSR1 time-limit signal), then resubmitted or requeued. Every run must complete with weights
bit-identical to an uninterrupted run's (CPU, fp32), every checkpoint must verify against its manifest, and every
attempt's energy must be in run.json."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parcae_runner.runs import RunDirectory
from parcae_runner.runs.checkpoints import verify_checkpoint
from tests.launch.conftest import sbatch_pythia_debug

pytestmark = pytest.mark.slow
TRIALS = 10
SEED = 20261201
MAX_STEPS = 120


def _overrides(tmp_path: Path, data_cache: Path) -> list[str]:
    return [
        f"results_dir={tmp_path / 'results'}",
        f"data.cache_dir={data_cache}",
        "data.vocab_size=512",
        "data.seq_len=32",
        "train.batch_size=8",
        "train.micro_batch_size=4",
        f"train.max_steps={MAX_STEPS}",
        "train.val_interval=15",
        "train.val_batches=2",
        "train.log_interval=1",
        "train.checkpoint.schedule=interval",
        "train.checkpoint.every=10",
        # evaluation at checkpoints too, so a kill can land in the middle of one
        "train.eval.tasks=[bpb]",
        "train.eval.every=2",
        "logger.wandb=false",
        "logger.measure_power_secs=1",
        "logger.energy_flush_secs=1",
        "cluster=slurm_local",
    ]


def _in_queue(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


def _step(rd: RunDirectory) -> int:
    try:
        return max((r.get("step", 0) for r in rd.read_metrics()), default=-1)
    except (OSError, ValueError):
        return -1


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.02)


def test_ten_interrupted_runs_all_complete_bit_identical(slurm_cluster, tmp_path, data_cache) -> None:
    overrides = _overrides(tmp_path, data_cache)
    rng = random.Random(SEED)
    # the moment: a step, then up to 0.3 s past it; late enough to leave room for the signal to act before the end
    plan = [(rng.choice(["sigkill", "scancel", "sigusr1"]), rng.randint(1, MAX_STEPS - 40)) for _ in range(TRIALS)]
    sbatch_pythia_debug(overrides, "reference")
    results = tmp_path / "results" / "single"
    # every trial queued at once (the cluster runs two at a time); each is interrupted when it reaches its moment
    pending = {}
    for i, (mode, at_step) in enumerate(plan):
        pending[f"trial{i}"] = (mode, at_step, sbatch_pythia_debug(overrides, f"trial{i}"))
    outcomes, resubmit = [], []
    deadline = time.time() + 900
    while pending:
        assert time.time() < deadline, f"trials never reached their moment: {sorted(pending)}"
        for name, (mode, at_step, job) in list(pending.items()):
            if _step(RunDirectory(results / name)) < at_step:
                continue
            time.sleep(rng.uniform(0.0, 0.3))  # past the step boundary: mid-step, mid-checkpoint, mid-evaluation
            if mode == "sigkill":  # to the job's steps: the training task itself dies, with no chance to write
                subprocess.run(["scancel", "--signal=KILL", job], check=True)
            elif mode == "scancel":
                subprocess.run(["scancel", job], check=True)
            else:  # the time-limit signal: the run checkpoints and Slurm requeues it
                subprocess.run(["scancel", "--signal=USR1", job], check=True)
            if mode != "sigusr1":
                resubmit.append((name, job))
            outcomes.append((name, mode, at_step))
            del pending[name]
        for name, job in list(resubmit):  # killed or cancelled: submitting the same command again resumes it
            if not _in_queue(job):
                sbatch_pythia_debug(overrides, name)
                resubmit.remove((name, job))
        time.sleep(0.02)
    for name, job in resubmit:
        _wait(lambda job=job: not _in_queue(job), 120, f"{name}'s job to leave the queue")
        sbatch_pythia_debug(overrides, name)

    reference = RunDirectory(results / "reference")
    passed = 0
    for name, mode, at_step in outcomes:
        rd = RunDirectory(results / name)
        _wait(lambda rd=rd: rd.read_run().get("status") == "done", 600, f"{name} ({mode} at {at_step}) to finish")
        _wait(lambda: reference.read_run().get("status") == "done", 600, "the reference run")
        ref = load_file(reference.checkpoints / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
        got = load_file(rd.checkpoints / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref), f"{name} ({mode})"
        assert not list(rd.checkpoints.glob(".tmp-*")), name
        assert all(verify_checkpoint(p) is None for p in rd.checkpoints.glob("checkpoint-*")), name
        run = rd.read_run()
        assert run["attempts"] >= 2 and len(run.attempt_history) >= 2, (name, run.attempt_history)
        assert all("energy_kwh" in h for h in run.attempt_history), name
        assert run["energy_kwh"] == pytest.approx(sum(h["energy_kwh"] for h in run.attempt_history)), name
        assert run["final_val_loss"] == reference.read_run()["final_val_loss"], name
        passed += 1
    print(f"\nchaos: {passed}/{TRIALS} ({', '.join(f'{m}@{s}' for _, m, s in outcomes)})")
    assert passed == TRIALS
