"""Sweeps against the real one-node Slurm: job arrays, status, resubmission, the requeue
signal, and `sbatch launch_job.slurm`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory
from tests.launch.conftest import sbatch_pythia_debug

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def wait_for(predicate, timeout: float, what: str, poll: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def write_sweep(path: Path, params: dict[str, str], fixed: dict[str, object]) -> Path:
    lines = ["# Question: a test sweep.", f"name: {path.stem}", "params:"]
    lines += [f"  {k}: {v}" for k, v in params.items()]
    lines += ["fixed:"] + [f"  {k}: {v}" for k, v in fixed.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def status_rows(root: Path) -> list[dict]:
    out = cli("status", str(root), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_grid_runs_as_one_array_and_resubmission_is_a_no_op(slurm_cluster, tmp_path, small):
    sweep = write_sweep(tmp_path / "grid.yaml", {"size": "debug,14m", "seed": "0,1"}, {**small, "train.max_steps": 20})
    started = time.time()
    out = cli("sweep", str(sweep), "cluster=slurm_local")
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.time() - started < 60, "sweep must return once submitted"
    root = tmp_path / "results" / "grid"
    record = json.loads((root / "sweep.json").read_text())
    jobs = record["jobs"]
    assert sorted(jobs) == ["pythia-14m-s0", "pythia-14m-s1", "pythia-debug-s0", "pythia-debug-s1"]
    assert len({j.split("_")[0] for j in jobs.values()}) == 1, f"not one array: {jobs}"
    assert record["submissions"][0]["commit"] is None or len(record["submissions"][0]["commit"]) == 40

    rows = wait_for(
        lambda: (r := status_rows(root)) and all(x["status"] == "done" for x in r) and r, 300, "all four runs done"
    )
    assert [r["step"] for r in rows] == [20] * 4
    table = cli("status", str(root)).stdout
    assert "4/4 done" in table and sum(" done " in line for line in table.splitlines()[2:]) == 4
    for name in jobs:
        run_dir = RunDirectory(root / name)
        run = run_dir.read_run()
        assert run["status"] == "done" and run["attempts"] == 1 and run["energy_kwh"] > 0
        for f in ("config.yaml", "metrics.jsonl", "emissions.csv", "checkpoints/checkpoint-20/model.safetensors"):
            assert (run_dir.path / f).exists(), f
        assert list((run_dir.path / "logs").glob("*.out")) or list((root / ".submitit").glob("*/*.out"))

    again = cli("sweep", str(sweep), "cluster=slurm_local")
    assert again.returncode == 0 and "nothing to submit" in again.stderr
    assert json.loads((root / "sweep.json").read_text())["jobs"] == jobs
    assert not squeue_ids() & set(jobs.values())


def test_invalid_point_submits_nothing(slurm_cluster, tmp_path, small):
    before = squeue_ids()
    sweep = write_sweep(
        tmp_path / "bad.yaml",
        {"seed": "0", "train.batch_size": "8,12"},
        {**small, "train.micro_batch_size": 8, "train.max_steps": 5},
    )
    out = cli("sweep", str(sweep), "cluster=slurm_local")
    assert out.returncode == 2
    assert "point pythia-debug-s0-batch_size12: train.batch_size=12" in out.stderr
    assert squeue_ids() == before
    assert not (tmp_path / "results" / "bad").exists()


def test_unknown_profile_and_unparsable_sweep_exit_2(tmp_path, small):
    sweep = write_sweep(tmp_path / "ok.yaml", {"seed": "0"}, small)
    out = cli("plan", str(sweep), "cluster=slurm_mars")
    assert out.returncode == 2 and "cluster=slurm_mars: unknown cluster; choose one of: local" in out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("params: [unclosed\n")
    out = cli("plan", str(broken))
    assert out.returncode == 2 and "does not parse as YAML" in out.stderr
    grid_key = write_sweep(tmp_path / "key.yaml", {"train.max_stepz": "1,2"}, small)
    out = cli("plan", str(grid_key))
    assert out.returncode == 2 and "train.max_stepz" in out.stderr and "allowed keys of train" in out.stderr


def test_profile_larger_than_partition_exit_2(slurm_cluster, tmp_path, small):
    sweep = write_sweep(tmp_path / "big.yaml", {"seed": "0"}, small)
    before = squeue_ids()
    for override, key in (
        ("cluster.cpus_per_task=64", "cluster.cpus_per_task=64"),
        ("cluster.mem_gb=4096", "cluster.mem_gb=4096"),
        ("cluster.gpus_per_node=8", "cluster.gpus_per_node=8"),
    ):
        # a batch the 8 ranks divide, so that it is the partition that refuses the last one
        out = cli("sweep", str(sweep), "cluster=slurm_local", override, "train.batch_size=64")
        assert out.returncode == 2, out.stderr
        assert key in out.stderr and "node" in out.stderr
    # nothing new was submitted (jobs of earlier tests may have left the queue meanwhile)
    assert squeue_ids() <= before


def test_cancelled_run_resumes_alone(slurm_cluster, tmp_path, small):
    # long enough that the cancel lands mid-run on a quiet machine too (a tiny step takes ~7 ms there: the ~370 steps
    # after the step it waits for last over 2 s, the signal arrives within a few tenths)
    sweep = write_sweep(tmp_path / "cancel.yaml", {"seed": "0,1"}, {**small, "train.max_steps": 400})
    assert cli("sweep", str(sweep), "cluster=slurm_local").returncode == 0
    root = tmp_path / "results" / "cancel"
    jobs = json.loads((root / "sweep.json").read_text())["jobs"]
    victim = RunDirectory(root / "pythia-debug-s1")
    wait_for(lambda: (victim.checkpoints / "checkpoint-64" / "meta.json").exists(), 240, "a checkpoint of s1", poll=0.1)
    subprocess.run(["scancel", jobs["pythia-debug-s1"]], check=True)
    wait_for(lambda: victim.read_run().get("status") not in ("running", None), 60, "s1 to record its end")
    assert victim.read_run()["status"] == "terminated"
    wait_for(lambda: RunDirectory(root / "pythia-debug-s0").read_run().get("status") == "done", 300, "s0 done")

    out = cli("sweep", str(sweep), "cluster=slurm_local")
    assert out.returncode == 0 and "submitted 1 runs" in out.stderr
    record = json.loads((root / "sweep.json").read_text())
    assert list(record["submissions"][-1]["jobs"]) == ["pythia-debug-s1"]
    wait_for(lambda: victim.read_run().get("status") == "done", 300, "s1 to finish after resubmission")
    run = victim.read_run()
    assert run["attempts"] == 2 and run["attempt_history"][-1]["start_step"] >= 64
    assert RunDirectory(root / "pythia-debug-s0").read_run()["attempts"] == 1


def test_signal_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path, small):
    """`sbatch launch_job.slurm` end to end, interrupted by the time-limit signal."""
    overrides = [f"{k}={v}" for k, v in small.items() if k != "logger.wandb"] + [
        "train.max_steps=400",
        "logger.wandb=true",
        "cluster=slurm_local",
    ]

    # the same config, uninterrupted, in an identical job
    # one CPU each: the two jobs run side by side, so the signalled one does not wait for the reference first
    sbatch_pythia_debug(overrides, "reference")
    job = sbatch_pythia_debug(overrides, "requeued")
    run_dir = RunDirectory(tmp_path / "results" / "single" / "requeued")
    wait_for(lambda: any(r.get("step", 0) >= 40 for r in run_dir.read_metrics()), 240, "step 40", poll=0.1)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_for(lambda: run_dir.read_run().get("attempts") == 2, 240, "the requeued attempt to start")
    wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the requeued run to finish")

    run = run_dir.read_run()
    history = run["attempt_history"]
    assert [h["status"] for h in history] == ["requeued", "done"]
    assert history[1]["start_step"] == history[0]["end_step"] > 0
    assert all(h["energy_kwh"] > 0 for h in history)
    assert run["energy_kwh"] == pytest.approx(sum(h["energy_kwh"] for h in history))
    wandb_dirs = sorted(run_dir.path.glob("wandb/offline-run-*"))
    assert len(wandb_dirs) == 2 and {d.name.rsplit("-", 1)[1] for d in wandb_dirs} == {run["wandb_id"]}
    assert (run_dir.path / "logs" / f"slurm-{job}.out").read_text().count("requeued Slurm job") == 1

    reference = RunDirectory(tmp_path / "results" / "single" / "reference")
    wait_for(lambda: reference.read_run().get("status") == "done", 300, "the reference run")
    assert reference.read_run()["attempts"] == 1
    assert reference.read_run()["final_val_loss"] == run["final_val_loss"]
