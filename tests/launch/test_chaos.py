"""Chaos on the real local Slurm: 10 runs, each interrupted at a moment drawn from a seed (SIGKILL of the whole job,
`scancel`, or the SIGUSR1 time-limit signal), then resubmitted or requeued. Every run must complete with weights
bit-identical to an uninterrupted run's (CPU, fp32), every checkpoint must verify against its manifest, and every
attempt's energy must be in run.json.

Sharded (``train.strategy=fsdp``, 2 ranks on the node): 5 runs, each SIGKILLed while its ranks write a
``torch.distributed.checkpoint`` folder; the job requeues itself, resumes from the checkpoint before the torn one and
ends where an uninterrupted sharded run ends (weights within 1e-5, the same global batch digest)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parcae_runner.runs import RunDirectory, load_model
from parcae_runner.runs.checkpoints import PREFIX, RESUME_FILE, SHARDED_WEIGHTS_DIR, verify_checkpoint
from tests.launch.conftest import describe_jobs, rank_pids, sbatch_pythia_debug

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


FSDP_TRIALS = 5
FSDP_MAX_STEPS = 20
# the two DCP folders of a sharded checkpoint, each written by every rank, its shards (*.distcp) first, in place; its
# .metadata last (rank 0, once every rank's shards are down): shards without .metadata are a write in progress
DCP_FOLDERS = (RESUME_FILE, SHARDED_WEIGHTS_DIR)
DCP_SHARD, DCP_METADATA = ".distcp", ".metadata"


def _fsdp_overrides(tmp_path: Path, data_cache: Path) -> list[str]:
    """The runs above, sharded over two ranks (the node's 2 CPUs) with a checkpoint at every step, each a write to
    land in; no evaluation at checkpoints (a sharded run's checkpoints are evaluated afterwards)."""
    dropped = ("train.max_steps=", "train.checkpoint.every=", "train.eval.")
    return [
        *(o for o in _overrides(tmp_path, data_cache) if not o.startswith(dropped)),
        f"train.max_steps={FSDP_MAX_STEPS}",
        "train.checkpoint.every=1",
        "train.strategy=fsdp",
        "cluster.tasks_per_node=2",
    ]


def _dcp_write_in_progress(checkpoints: Path, from_step: int, folder: str) -> int | None:
    """N while ``.tmp-checkpoint-N/<folder>`` (N >= ``from_step``) holds shards written but not its metadata."""
    try:
        entries = os.listdir(checkpoints)
    except FileNotFoundError:
        return None
    for entry in entries:
        if not entry.startswith(f".tmp-{PREFIX}") or int(entry.removeprefix(f".tmp-{PREFIX}")) < from_step:
            continue
        try:
            files = os.listdir(checkpoints / entry / folder)
        except FileNotFoundError:
            continue
        if DCP_METADATA not in files and any(f.endswith(DCP_SHARD) for f in files):
            return int(entry.removeprefix(f".tmp-{PREFIX}"))
    return None


def _stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # gone
    return state in ("T", "t", "Z", "X")


def _kill_inside_dcp_write(pids: list[int], checkpoints: Path, from_step: int, folder: str) -> dict | None:
    """Freeze the ranks (SIGSTOP) and look: stopped inside the write of ``folder``, they are SIGKILLed there and what
    the folder holds is what the kill left (returned); stopped anywhere else, they go on (SIGCONT): None.
    Polling alone could not say where a kill landed: the write of this small model takes milliseconds."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    _wait(lambda: all(_stopped(pid) for pid in pids), 30, "the ranks to stop")
    step = _dcp_write_in_progress(checkpoints, from_step, folder)
    if step is None:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        return None
    torn = checkpoints / f".tmp-{PREFIX}{step}" / folder
    left = {
        "step": step,
        "folder": folder,
        "files": {f.name: f.stat().st_size for f in torn.iterdir()},
        "published": (checkpoints / f"{PREFIX}{step}").exists(),
    }
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return left


def _kill_each_inside_a_dcp_write(results: Path, jobs: dict[str, str], targets: dict[str, tuple[int, str]]) -> dict:
    """Watch the trials (the node runs one 2-rank job at a time) and kill each in the first write of its DCP folder
    caught at or after its step; returns name -> what its kill left, and how many freezes fell outside a write."""
    pending, pids, torn, missed = dict(targets), {}, {}, 0
    deadline, queue_checked = time.time() + 900, time.time()
    while pending:
        assert time.time() < deadline, f"trials never caught inside a checkpoint write: {sorted(pending)}"
        if time.time() - queue_checked > 5:  # a job gone before its kill (failed, cancelled) fails the test now
            queue_checked = time.time()
            gone = [name for name in pending if not _in_queue(jobs[name])]
            assert not gone, f"left the queue before a kill: {gone}\n{describe_jobs({jobs[n] for n in gone})}"
        for name, (from_step, folder) in list(pending.items()):
            checkpoints = results / name / "checkpoints"
            if name not in pids:  # found once, when training has begun: a /proc scan outlasts a write
                found = rank_pids(jobs[name]) if checkpoints.is_dir() else {}
                if len(found) == 2:
                    pids[name] = [found[0], found[1]]
                continue
            assert not (checkpoints / f"{PREFIX}{FSDP_MAX_STEPS}").exists(), f"{name} ended without being caught"
            if _dcp_write_in_progress(checkpoints, from_step, folder) is None:
                continue
            left = _kill_inside_dcp_write(pids[name], checkpoints, from_step, folder)
            if left is None:
                missed += 1
                continue
            torn[name] = left
            del pending[name]
        time.sleep(0.001)
    return {"torn": torn, "missed": missed}


def test_five_kills_inside_sharded_checkpoint_writes_resume_from_the_previous_checkpoint_exactly(
    slurm_cluster, tmp_path, data_cache
) -> None:
    overrides = _fsdp_overrides(tmp_path, data_cache)
    rng = random.Random(SEED)
    # each trial: the first step whose write may be hit (at least 10 writes left to catch) and the folder to tear
    targets = {f"trial{i}": (rng.randint(2, FSDP_MAX_STEPS - 10), DCP_FOLDERS[i % 2]) for i in range(FSDP_TRIALS)}
    sbatch_pythia_debug(overrides, "reference", tasks_per_node=2)
    jobs = {name: sbatch_pythia_debug(overrides, name, tasks_per_node=2) for name in targets}
    results = tmp_path / "results" / "single"
    caught = _kill_each_inside_a_dcp_write(results, jobs, targets)

    reference = RunDirectory(results / "reference")
    _wait(lambda: reference.read_run().get("status") == "done", 600, "the reference run")
    expected = load_model(reference.path).state_dict()
    expected_digest = reference.read_run().attempt_history[-1]["batch_digest"]
    worst, passed = {}, 0
    for name, left in caught["torn"].items():
        rd = RunDirectory(results / name)
        _wait(lambda rd=rd: rd.read_run().get("status") == "done", 600, f"{name} to finish after its requeue")
        step_log = (rd.path / "logs" / f"slurm-{jobs[name]}.out").read_text()
        assert re.search(rf"requeued Slurm job {jobs[name]} \(a rank was lost \(step exit 1(37|43)\)", step_log), name
        run = rd.read_run()
        history = run.attempt_history
        # the torn checkpoint was never published; the requeued job resumed from the one before it
        assert not left["published"] and DCP_METADATA not in left["files"], (name, left)
        assert [h["start_step"] for h in history] == [0, left["step"] - 1], (name, left, history)
        assert history[0]["status"] != "done" and history[-1]["batch_digest"] == expected_digest, (name, history)
        got = load_model(rd.path).state_dict()
        assert got.keys() == expected.keys(), name
        worst[name] = max(float((got[k] - tensor).abs().max()) for k, tensor in expected.items())
        assert worst[name] < 1e-5, (name, worst[name])
        assert run["final_val_loss"] == pytest.approx(reference.read_run()["final_val_loss"], abs=1e-5), name
        assert not list(rd.checkpoints.glob(".tmp-*")), name
        assert all(verify_checkpoint(p) is None for p in rd.checkpoints.glob(f"{PREFIX}*")), name
        assert all("energy_kwh" in h for h in history), name
        assert run["energy_kwh"] == pytest.approx(sum(h["energy_kwh"] for h in history)), name
        passed += 1
    kills = ", ".join(
        f"{n}: {t['folder']} of {PREFIX}{t['step']} ({t['files']}), worst {worst.get(n, float('nan')):.1e}"
        for n, t in caught["torn"].items()
    )
    missed = caught["missed"]
    print(f"\nchaos (fsdp): {passed}/{FSDP_TRIALS} killed inside DCP writes ({missed} freezes fell outside); {kills}")
    assert passed == FSDP_TRIALS
