"""One trainer per run directory, and run.json writers that never lose each other's fields."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parcae_runner.runs import RunDirectory
from parcae_runner.runs.lock import LOCK_FILE, run_lock


def _train(overrides: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "parcae_runner.cli", "train", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True)


def _run_dir(overrides: list[str]) -> Path:
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).split("=", 1)[1])
    return results / "single" / "pythia-debug-s0"


@pytest.mark.slow
def test_a_second_launch_exits_2_naming_the_holder(fast_overrides: list[str]) -> None:
    run_dir = _run_dir(fast_overrides)
    with run_lock(run_dir):
        result = _train([*fast_overrides, "train.max_steps=3"])
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert f"is being trained by host {os.uname().nodename}, pid {os.getpid()}" in message
    # it wrote nothing: no config, no record, no checkpoint
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]


@pytest.mark.slow
def test_a_dead_holders_lock_is_taken_over(fast_overrides: list[str]) -> None:
    run_dir = _run_dir(fast_overrides)
    run_dir.mkdir(parents=True)
    # what a SIGKILLed trainer leaves: its identity in the file, no flock (the kernel dropped it with the process)
    (run_dir / LOCK_FILE).write_text(json.dumps({"host": "node7", "pid": 4242, "slurm_job_id": "991"}))
    result = _train([*fast_overrides, "train.max_steps=3", "train.progress=true"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "taking over the lock of pythia-debug-s0 from Slurm job 991, host node7, pid 4242" in result.stderr
    assert RunDirectory(run_dir).read_run().status == "done"
    assert (run_dir / LOCK_FILE).read_text() == ""  # released cleanly


def _writer(folder: str, key: str, n: int) -> None:
    rd = RunDirectory(Path(folder))
    stale = rd.read_run()  # a long-lived copy, as training holds one
    for i in range(n):
        stale.update(**{key: i})


@pytest.mark.multiprocess
def test_concurrent_run_json_writers_lose_nothing(tmp_path: Path) -> None:
    rd = RunDirectory(tmp_path / "run")
    rd.path.mkdir()
    rd.update_run(status="running")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(rd.path), f"writer{i}", 150)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    record = rd.read_run()
    assert record["status"] == "running"
    assert [record[f"writer{i}"] for i in range(3)] == [149, 149, 149]


def _eval_writer(folder: str, key: str, n: int) -> None:
    rd = RunDirectory(Path(folder))
    for i in range(n):
        rd.read_run().merge("eval", {f"checkpoint-{i}": {key: {"loss": i}}})


@pytest.mark.multiprocess
def test_concurrent_eval_results_merge_into_one_summary(tmp_path: Path) -> None:
    """Evaluations of different tasks written at the same moment (the eval command twice, or beside evaluation
    during training) each keep their entry under every checkpoint: a read-then-write outside the lock loses some."""
    rd = RunDirectory(tmp_path / "run")
    rd.path.mkdir()
    rd.update_run(status="running")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_eval_writer, args=(str(rd.path), f"task{i}", 60)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    summary = rd.read_run().eval
    assert sorted(summary) == sorted(f"checkpoint-{i}" for i in range(60))
    assert all(sorted(entry) == ["task0", "task1", "task2"] for entry in summary.values())


@pytest.mark.multiprocess
def test_eval_beside_a_live_training_run_loses_nothing(fast_overrides: list[str]) -> None:
    """`parcae-runner eval` run again and again while the same run trains and finishes: run.json ends with the
    trainer's final fields (status done, final step) and every evaluation's results."""
    run_dir = _run_dir(fast_overrides)
    rd = RunDirectory(run_dir)
    steps = 150
    train_cmd = [sys.executable, "-m", "parcae_runner.cli", "train", *fast_overrides, f"train.max_steps={steps}"]
    train_cmd += ["train.checkpoint.schedule=list", "train.checkpoint.steps=[2,4]"]
    trainer = subprocess.Popen(train_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (rd.checkpoints / "checkpoint-4" / "meta.json").exists():
        assert trainer.poll() is None, trainer.stderr.read()[-2000:] if trainer.stderr else ""
        assert time.time() < deadline
        time.sleep(0.05)
    evals, overlapped = 0, 0
    eval_cmd = [sys.executable, "-m", "parcae_runner.cli", "eval", str(run_dir), "--tasks", "bpb", "--limit", "2"]
    while evals < 2 or trainer.poll() is None:
        checkpoint = 2 + 2 * (evals % 2)
        result = subprocess.run([*eval_cmd, "--checkpoint", str(checkpoint)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        evals += 1
        overlapped += trainer.poll() is None
        assert time.time() < deadline + 300
    assert trainer.wait() == 0, trainer.stderr.read()[-2000:] if trainer.stderr else ""
    assert overlapped >= 1  # at least one evaluation ran while the trainer was writing
    run = rd.read_run()
    assert run.status == "done" and run["step"] == steps
    assert sorted(run.eval) == ["checkpoint-2", "checkpoint-4"]
    assert all(any(key.startswith("bpb") for key in entry) for entry in run.eval.values()), run.eval
