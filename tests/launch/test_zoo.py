"""The model-zoo demo: gpt2, pythia, llama, mistral, bloom and backpack x 2 seeds at `debug`, through the sweep
machinery as one job array on the local Slurm cluster, every run done and each architecture in the report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from parcae_runner.runs import RunDirectory

from .test_sweeps import REPO, status_rows, wait_for

pytestmark = pytest.mark.slow
ARCHS = ("gpt2", "pythia", "llama", "mistral", "bloom", "backpack")
# 4 steps leave each model where its init put it: close to the uniform prediction, whose loss is ln(vocab). Measured
# (the same 12 runs, cluster=local): 6.11 to 6.32 against ln 512 = 6.24. A model that diverges, gives NaN
# or comes out of its init far from uniform lands outside.
NEAR_UNIFORM = 0.3


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "parcae_runner.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ), timeout=1200)


def test_zoo_demo_runs_on_slurm_and_is_reported(slurm_cluster, tmp_path, data_cache):
    results = tmp_path / "results"
    # the demo variant, shortened further: the point is the machinery and the report, not the losses
    fast = [
        "train.max_steps=4",
        "train.val_interval=4",
        "train.val_batches=1",
        "data.seq_len=32",
        "data.vocab_size=512",
    ]
    out = _cli(
        "sweep",
        "sweeps/zoo.yaml",
        "--variant",
        "demo",
        "cluster=slurm_local",
        f"results_dir={results}",
        f"data.cache_dir={data_cache}",
        "logger.wandb=false",
        "train.progress=false",
        *fast,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    root = results / "zoo-demo"
    jobs = json.loads((root / "sweep.json").read_text())["jobs"]
    names = sorted(f"{a}-debug-s{s}" for a in ARCHS for s in (0, 1))
    assert sorted(jobs) == names
    assert len({j.split("_")[0] for j in jobs.values()}) == 1, f"not one array: {jobs}"
    wait_for(
        lambda: (r := status_rows(root)) and all(x["status"] == "done" for x in r), 900, "all twelve runs done", poll=2
    )
    uniform = math.log(512)
    for name in names:
        run = RunDirectory(root / name).read_run()
        assert run.status == "done", name
        assert abs(run["final_val_loss"] - uniform) < NEAR_UNIFORM, (name, run["final_val_loss"])

    report = _cli("report", str(root))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (root / "report" / "index.html").read_text()
    for arch in ARCHS:
        assert f">{arch}<" in html, arch
