"""What `train` refuses, `launch` and `sweep` refuse before anything is submitted: a run that repeats its data
thousands of times, a plan-only size, a dataset that is not there. Exit 2 with the reason, no `sbatch` call (a
recording `sbatch` first on PATH), the Slurm queue as it was, and nothing written under the results folder. `plan`
still costs a plan-only size and says it cannot be trained; the job script refuses it before `srun`."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from parcae_runner.launch import job_script
from tests.launch.conftest import queued_jobs
from tests.launch.test_sweeps import cli, write_sweep

# each case: overrides of the pythia-debug preset, and what the refusal says
REFUSED = {
    # 100,000 steps of 8 x 32 tokens from the embedded corpus: hundreds of epochs, above data.max_epochs
    "epochs": ({"train.max_steps": 100000}, "would repeat its data"),
    "plan-only size": ({"arch": "llama", "size": "llama-7b"}, "plan-only for llama"),
    "missing dataset": ({"data.source": "hf", "data.dataset": "{missing}"}, "cannot be loaded"),
}


def recording_sbatch(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose first `sbatch` on PATH notes each call in a file, then runs the real one."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    real = shutil.which("sbatch")
    assert real is not None, "the local cluster puts sbatch on PATH"
    shim = bin_dir / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, calls


def overrides(small: dict[str, object], case: dict[str, object], tmp_path: Path) -> dict[str, object]:
    values = {**small, "cluster": "slurm_local", **case}
    return {k: str(v).replace("{missing}", str(tmp_path / "no-such-corpus")) for k, v in values.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_launch_refuses_what_train_would_before_sbatch(slurm_cluster, tmp_path, small, case):
    env, calls = recording_sbatch(tmp_path)
    values, reason = REFUSED[case]
    args = [f"{k}={v}" for k, v in overrides(small, values, tmp_path).items()]
    before = queued_jobs()
    out = cli("launch", "--config", "pythia-debug", *args, "run_name=refused", env=env)
    assert out.returncode == 2, out.stdout + out.stderr[-3000:]
    assert reason in out.stderr, out.stderr[-3000:]
    assert not calls.exists(), f"sbatch was called: {calls.read_text()}"
    assert queued_jobs() == before
    assert not (tmp_path / "results").exists(), "nothing may be written before the check"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_sweep_refuses_what_train_would_before_sbatch(slurm_cluster, tmp_path, small, case):
    env, calls = recording_sbatch(tmp_path)
    values, reason = REFUSED[case]
    # two points, so that a submission would be a job array
    sweep = write_sweep(tmp_path / "refused.yaml", {"seed": "0,1"}, overrides(small, values, tmp_path))
    before = queued_jobs()
    out = cli("sweep", str(sweep), env=env)
    assert out.returncode == 2, out.stdout + out.stderr[-3000:]
    assert reason in out.stderr, out.stderr[-3000:]
    assert not calls.exists(), f"sbatch was called: {calls.read_text()}"
    assert queued_jobs() == before
    assert not (tmp_path / "results").exists(), "nothing may be written before the check"


def test_plan_costs_a_plan_only_size_and_says_it_cannot_be_trained(tmp_path, small):
    values = overrides(small, REFUSED["plan-only size"][0], tmp_path)
    sweep = write_sweep(tmp_path / "big.yaml", {"seed": "0"}, values)
    out = cli("plan", str(sweep))
    assert out.returncode == 0, out.stderr[-3000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("llama-llama-7b-s0"))
    assert row.split()[-1] == "plan-only" and row.split()[1].endswith("G"), row
    assert "cannot be trained" in out.stdout and "llama-llama-7b-s0" in out.stdout.splitlines()[-1]
    assert not (tmp_path / "results").exists()


def test_the_job_script_refuses_a_plan_only_size_before_srun(tmp_path, small, monkeypatch, capsys):
    values = overrides(small, REFUSED["plan-only size"][0], tmp_path)
    monkeypatch.setenv("CONFIG", "pythia-debug")
    monkeypatch.setenv("PYTHON", sys.executable)
    assert job_script.main([f"{k}={v}" for k, v in values.items()]) == 2
    assert "size=llama-7b: plan-only for llama" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
