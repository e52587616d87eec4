"""The Parc demo: Pythia, Mamba and RWKV-4, two seeds each, through the sweep machinery on the
local Slurm cluster; every model learns beyond token frequencies and all six see the same batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from parcae_runner.data import load_prepared
from parcae_runner.runs import RunDirectory

from .test_sweeps import REPO, status_rows, wait_for

pytestmark = pytest.mark.slow


def unigram_entropy_nats(tokens: np.ndarray) -> float:
    counts = np.bincount(tokens.astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_parc_demo_on_slurm(slurm_cluster, tmp_path, data_cache):
    results = tmp_path / "results"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "parcae_runner.cli",
            "sweep",
            "sweeps/parc.yaml",
            "--variant",
            "demo",
            "cluster=slurm_local",
            f"results_dir={results}",
            f"data.cache_dir={data_cache}",
            "logger.wandb=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    root = results / "parc-demo"
    jobs = json.loads((root / "sweep.json").read_text())["jobs"]
    assert sorted(jobs) == [f"{a}-debug-s{s}" for a in ("mamba", "pythia", "rwkv4") for s in (0, 1)]
    assert len({j.split("_")[0] for j in jobs.values()}) == 1

    wait_for(lambda: all(r["status"] == "done" for r in status_rows(root)), 600, "six runs done", poll=3)
    runs = {name: RunDirectory(root / name).read_run() for name in jobs}
    entropy = unigram_entropy_nats(np.asarray(load_prepared(next(iter(runs.values()))["data"]["dir"]).val))
    for name, run in runs.items():
        assert run["final_val_loss"] < entropy - 0.3, (name, run["final_val_loss"], entropy)
    # the loader's digest of every batch it handed out, in order: one value for all six runs
    digests = {run["attempt_history"][-1]["batch_digest"] for run in runs.values()}
    assert len(digests) == 1 and None not in digests
    assert len({run["data"]["hash"] for run in runs.values()}) == 1
