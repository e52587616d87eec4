"""`parcae-runner launch` asks Slurm for the profile's resources (on the local cluster's fake GPUs), a plain
`sbatch launch_job.slurm` that did not stops before training and names the flags, and `resubmit --failed` /
`cancel` work through the CLI on the real cluster."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from parcae_runner.runs import RunDirectory
from tests.launch.test_sweeps import REPO, cli, squeue_ids, status_rows, wait_for, write_sweep

pytestmark = pytest.mark.slow


def scontrol(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def gpu_overrides(small: dict[str, object], results: str) -> list[str]:
    # two ranks of 4 make the batch of 8
    values = {**small, "train.micro_batch_size": 4, "train.max_steps": 20, "cluster": "slurm_local_gpu"}
    return [f"{k}={v}" for k, v in values.items()] + [f"run_name={results}"]


def test_launch_asks_for_the_profile_and_each_rank_gets_its_gpu(slurm_cluster, tmp_path, small):
    out = cli("launch", "--config", "pythia-debug", *gpu_overrides(small, "launched"))
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.splitlines()[0]
    assert line.startswith(
        "CONFIG=pythia-debug sbatch --parsable --partition=debug --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 "
        "--cpus-per-task=1 --mem=3072M --time=30 --requeue --signal=USR1@60 launch_job.slurm "
    ), line
    job = re.search(r"submitted Slurm job (\d+)", out.stdout).group(1)
    try:
        info = scontrol(job)
        # a job still pending shows NumNodes=1-1 (min-max), a running one NumNodes=1
        assert (info["NumNodes"].split("-")[0], info["NumTasks"], info["TimeLimit"]) == ("1", "2", "00:30:00")
        assert info["TresPerNode"] == "gres:gpu:2"
        run_dir = RunDirectory(tmp_path / "results" / "single" / "launched")
        wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the launched run to finish")
        run = run_dir.read_run()
        assert run["step"] == 20 and run["hardware"]["devices"] == 2
        step_log = (run_dir.path / "logs" / f"slurm-{job}.out").read_text()
        for rank in (0, 1):
            assert re.search(
                rf"rank {rank}/2 \(node \S+, local rank {rank}\): GPU {rank} "
                r"\(CUDA_VISIBLE_DEVICES=0,1 SLURM_STEP_GPUS=0,1\)",
                step_log,
            ), step_log[-3000:]
    finally:
        (REPO / f"slurm-parcae-{job}.out").unlink(missing_ok=True)


def test_plain_sbatch_without_the_profiles_flags_exits_2_and_names_them(slurm_cluster, tmp_path, small):
    overrides = gpu_overrides(small, "plain")
    env = {**os.environ, "CONFIG": "launch_configs/pythia-debug.yaml", "PYTHON": sys.executable}

    def sbatch(*flags: str) -> str:
        cmd = ["sbatch", "--parsable", f"--output={tmp_path}/batch-%j.out", *flags, "launch_job.slurm", *overrides]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=True)
        return done.stdout.strip().split(";")[0]

    job = sbatch()
    wait_for(lambda: job not in squeue_ids(), 120, "the plain job to end")
    assert scontrol(job)["ExitCode"] == "2:0"
    message = (tmp_path / f"batch-{job}.out").read_text()
    assert "tasks per node: got 1, the profile wants 2; GPUs on the node: got 0, the profile wants 2" in message
    assert not (tmp_path / "results" / "single" / "plain").exists(), "nothing may be written before the check"
    flags = shlex.split(re.search(r"sbatch (.*?) launch_job\.slurm", message).group(1))
    assert "--gpus-per-node=2" in flags and "--ntasks-per-node=2" in flags

    job = sbatch(*flags)
    run_dir = RunDirectory(tmp_path / "results" / "single" / "plain")
    wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the run submitted with the named flags")
    assert run_dir.read_run()["hardware"]["devices"] == 2


def test_resubmit_failed_takes_only_failed_and_cancelled_runs_and_cancel_empties_the_queue(
    slurm_cluster, tmp_path, small
):
    # three points: one finishes, one crashes (SIGKILL, as a node failure would), one is cancelled
    sweep = write_sweep(tmp_path / "fail.yaml", {"train.max_steps": "20,800,801"}, small)
    assert cli("sweep", str(sweep), "cluster=slurm_local").returncode == 0
    root = tmp_path / "results" / "fail"
    jobs = json.loads((root / "sweep.json").read_text())["jobs"]
    name = {steps: next(n for n in jobs if n.endswith(f"max_steps{steps}")) for steps in (20, 800, 801)}
    subprocess.run(["scancel", jobs[name[801]]], check=True)
    crash = RunDirectory(root / name[800])
    wait_for(lambda: any(r.get("step", 0) >= 5 for r in crash.read_metrics()), 240, "the run to train", poll=0.1)
    # the whole job, batch step included, as a node failure would: SIGKILL of the training tasks alone is a lost rank,
    # which the job script requeues by itself (tests/launch/test_two_hosts.py)
    subprocess.run(["scancel", "--full", "--signal=KILL", jobs[name[800]]], check=True)
    wait_for(lambda: not squeue_ids() & set(jobs.values()), 240, "every job of the sweep to end")
    rows = {r["run"]: r for r in status_rows(root)}
    assert rows[name[20]]["status"] == "done"
    # the array task ran the job step of launch_job.slurm: srun's output is the step log in the run directory
    step_logs = [p.read_text() for p in (root / name[20] / "logs").glob("slurm-*.out")]
    assert any("step 20/20" in text for text in step_logs), step_logs
    assert rows[name[800]]["status"] != "done" and rows[name[801]]["status"] != "done", rows

    out = cli("resubmit", str(root), "--failed")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((root / "sweep.json").read_text())
    resubmitted = record["submissions"][-1]["jobs"]
    assert sorted(resubmitted) == sorted([name[800], name[801]])
    assert set(resubmitted.values()) <= squeue_ids()

    out = cli("cancel", str(root))
    assert out.returncode == 0 and "cancelled 2 jobs" in out.stdout, out.stdout + out.stderr
    wait_for(lambda: not squeue_ids() & set(resubmitted.values()), 60, "the cancelled jobs to leave squeue")
    assert not squeue_ids() & set(record["jobs"].values())


def test_an_array_task_runs_the_job_step_and_survives_a_requeue(slurm_cluster, tmp_path, small):
    """Sweep arrays start training through the job step of launch_job.slurm: the time-limit signal (SIGUSR1, to the
    step) checkpoints, the task is requeued as `<array>_<task>`, resumes, and ends done."""
    # two points: a sweep of one is submitted as a plain job, not an array
    # long enough that the signal lands mid-run on a quiet machine too (a tiny step takes ~7 ms there: the ~370 steps
    # after the step it waits for last over 2 s, the signal arrives within a few tenths)
    sweep = write_sweep(tmp_path / "requeue.yaml", {"seed": "0,1"}, {**small, "train.max_steps": 400})
    assert cli("sweep", str(sweep), "cluster=slurm_local").returncode == 0
    root = tmp_path / "results" / "requeue"
    record = json.loads((root / "sweep.json").read_text())
    job = record["jobs"]["pythia-debug-s0"]
    assert job.endswith("_0"), f"not an array task: {job}"
    assert record["submissions"][0]["container"] is None, "the profile runs on the node's Python"
    run_dir = RunDirectory(root / "pythia-debug-s0")
    wait_for(lambda: any(r.get("step", 0) >= 30 for r in run_dir.read_metrics()), 240, "step 30", poll=0.1)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the requeued task to finish")
    run = run_dir.read_run()
    assert [h["status"] for h in run["attempt_history"]] == ["requeued", "done"]
    assert run["attempt_history"][1]["start_step"] == run["attempt_history"][0]["end_step"] > 0
    step_log = "".join(p.read_text() for p in (run_dir.path / "logs").glob("slurm-*.out"))
    assert f"requeued Slurm job {job}" in step_log
    assert step_log.count("rank 0/1") == 2, "each attempt is a job step of its own"
    wait_for(lambda: RunDirectory(root / "pythia-debug-s1").read_run().get("status") == "done", 300, "s1 done")
