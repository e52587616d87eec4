"""The wandb side of a sweep: runs line up for comparison (group, job type, tags, flat config),
and `parcae-runner wandb-sync` uploads only what is not uploaded yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.cli import main
from parcae_runner.config import compose_run_config
from parcae_runner.runs.wandb_offline import find_run_files, read_offline_run
from parcae_runner.train.runner import train

# every test reads a sweep trained once for the module (about 13 s)
pytestmark = pytest.mark.slow


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


def test_workspace_spec_panels_name_metrics_and_groupings_the_runs_hold(sweep_root):
    from parcae_runner.analysis.wandb_workspace import SPEC_FILE, to_workspace

    # post-hoc evaluation of one run adds its eval/ curves to the dashboard
    evaluated = sweep_root / "pythia-debug-s0"
    assert main(["eval", str(evaluated), "--all-checkpoints", "--tasks", "bpb"]) == 0
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    cmd = [sys.executable, "-m", "parcae_runner.cli", "wandb-sync", str(sweep_root), "--workspace", "--dry-run"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    spec = json.loads((sweep_root / SPEC_FILE).read_text())

    runs = [read_offline_run(f) for run_dir in sweep_root.glob("*/run.json") for f in find_run_files(run_dir.parent)]
    history = {k for wb in runs for row in wb["history"] for k in row}
    summary = {k for wb in runs for k in wb["summary"]}
    config = {k for wb in runs for k in wb["config"]}
    panels = [p for s in spec["sections"] for p in s["panels"]]
    for p in panels:
        if p["type"] == "line":
            assert {p["x"], *p["y"]} <= history, p
        else:
            assert set(p["metrics"]) <= summary, p
        assert p["groupby"] is None or p["groupby"] in config, p
    assert set(spec["runset"]["groupby"]) <= config and spec["runset"]["group"] == "cmp"

    sections = {s["name"]: s["panels"] for s in spec["sections"]}
    loss_axes = {p["x"] for p in sections["Loss"] if p["y"] == ["train/loss"]}
    assert loss_axes == {"trainer/global_step", "train/tokens", "train/flops"}
    assert all(p["groupby"] == "architecture" and p["rangefunc"] == "minmax" for p in sections["Loss"])
    assert any(p["metrics"] == ["final_val_loss"] and p["groupby"] == "arch_size" for p in sections["Final loss"])
    assert {"energy_kwh", "co2_kg"} <= {m for p in sections["Energy and carbon"] for m in p.get("metrics", [])}
    assert ["eval/bpb/bpb"] in [p["y"] for p in sections["Evaluation"]]
    assert {"train/grad_norm", "train/peak_memory_gib"} <= {p["y"][0] for p in sections["Telemetry"]}
    # the same specification as a wandb_workspaces Workspace (what an online --workspace saves)
    workspace = to_workspace(spec)
    assert [s.name for s in workspace.sections] == list(sections)
    assert sum(len(s.panels) for s in workspace.sections) == len(panels)
    assert "workspace not saved (dry run)" in out.stderr
