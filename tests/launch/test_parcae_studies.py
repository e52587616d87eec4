"""The Parcae recurrence study's demo through `make sweep-recurrence` on the local Slurm cluster:
each run validates at several depths, and the command ends with loss against R per budget."""

from __future__ import annotations

import os
import subprocess

import pytest

from parcae_runner.runs import RunDirectory

from .test_sweeps import REPO

pytestmark = pytest.mark.slow


def test_make_sweep_recurrence_demo(slurm_cluster, tmp_path, data_cache):
    results = tmp_path / "results"
    overrides = f"results_dir={results} data.cache_dir={data_cache} logger.wandb=false"
    out = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "sweep-recurrence",
            "VARIANT=demo",
            "CLUSTER=slurm_local",
            f"OVERRIDES={overrides}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    root = results / "recurrence-demo"
    runs = sorted(p.parent for p in root.glob("*/run.json"))
    assert len(runs) == 6
    for run_dir in runs:
        run = RunDirectory(run_dir).read_run()
        assert run["status"] == "done"
        # validated at R in {1, 2, 4, mean, 2 x mean}
        mean = int(run_dir.name.split("mean_recurrence")[1].split("-")[0])
        for depth in sorted({1, 2, 4, mean, 2 * mean}):
            assert f"final_loss@R{depth}" in run, (run_dir.name, sorted(run))
        # the budget decided the steps: FLOPs per token x tokens ~ budget
        budget = float(run_dir.name.split("max_flops")[1])
        assert run["max_steps"] >= 1 and abs(run["tokens"] * 1.0 / run["max_steps"] - 16 * 64) < 1e-9
        assert budget > 0
    table = out.stdout[out.stdout.rindex("final validation loss:") :]  # the plan header quotes the phrase too
    assert "rows arch.mean_recurrence, columns train.max_flops" in table
    lines = table.splitlines()
    assert [line.split()[0] for line in lines[3:6]] == ["1", "2", "4"]
    assert all(len(line.split()) == 3 for line in lines[3:6])  # R, then one loss per budget
