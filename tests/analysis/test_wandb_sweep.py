"""The wandb side of a sweep: runs line up for comparison (group, job type, tags, flat config),
and `parcae-runner wandb-sync` uploads only what is not uploaded yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.config import compose_run_config
from parcae_runner.runs.wandb_offline import find_run_files, read_offline_run
from parcae_runner.train.runner import train


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory, data_cache) -> Path:
    results = tmp_path_factory.mktemp("results")
    for arch, seed in (("pythia", 0), ("mamba", 1)):
        train(
            compose_run_config(
                [
                    f"arch={arch}",
                    "size=debug",
                    f"seed={seed}",
                    "sweep=cmp",
                    "data.vocab_size=512",
                    "data.seq_len=32",
                    f"data.cache_dir={data_cache}",
                    f"results_dir={results}",
                    "train.progress=false",
                    "logger=offline",
                    "logger.codecarbon=false",
                    "train.max_steps=4",
                    "train.log_interval=2",
                    "train.val_interval=2",
                    "train.val_batches=1",
                    "train.checkpoint.schedule=none",
                ]
            )
        )
    return results / "cmp"


def test_sweep_runs_carry_group_job_type_tags_and_flat_config(sweep_root):
    runs = {}
    for run_dir in sorted(p.parent for p in sweep_root.glob("*/run.json")):
        (run_file,) = find_run_files(run_dir)
        runs[run_dir.name] = read_offline_run(run_file)
    assert sorted(runs) == ["mamba-debug-s1", "pythia-debug-s0"]
    for name, wb in runs.items():
        arch, size, seed = name.split("-")
        assert wb["group"] == "cmp" and wb["job_type"] == arch and wb["name"] == name
        assert {size, f"seed{seed[1:]}"} <= set(wb["tags"])
        flat = wb["config"]
        assert (flat["architecture"], flat["size"], flat["seed"], flat["sweep"]) == (arch, size, int(seed[1:]), "cmp")
        assert any("train/loss" in row for row in wb["history"])
    # wandb's own CLI sees the same runs as uploadable
    dry = subprocess.run(
        [
            str(Path(sys.executable).with_name("wandb")),
            "sync",
            "--dry-run",
            *map(str, (p.parent for p in sweep_root.glob("*/wandb/offline-run-*/run-*.wandb"))),
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"},
    )
    assert "Would sync 2 run(s)" in dry.stdout + dry.stderr


def test_wandb_sync_without_key_says_what_it_would_do_and_skips_synced(sweep_root):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    cmd = [sys.executable, "-m", "parcae_runner.cli", "wandb-sync", str(sweep_root)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "2 offline wandb runs to upload, 0 already uploaded" in out.stderr
    assert out.stderr.count("would upload") == 2 and "WANDB_API_KEY is not set" in out.stderr

    # wandb marks an uploaded run with run-<id>.wandb.synced: such a run is skipped
    first = next(iter(sweep_root.glob("*/wandb/offline-run-*/run-*.wandb")))
    first.with_suffix(".wandb.synced").touch()
    out = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, env={**env, "WANDB_API_KEY": "x" * 40})
    assert "1 offline wandb runs to upload, 1 already uploaded" in out.stderr and "dry run" in out.stderr
    assert str(first.parent) not in out.stderr
