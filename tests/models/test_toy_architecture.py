"""A new architecture is one folder plus its tests: the toy of ``toy_arch/`` (its model and its registration, no
YAML) composes, trains through the CLI, collects and reports with no edit to the package or the config tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TOY = Path(__file__).parent / "toy_arch"
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PARCAE_EXTRA_ARCHS": TOY.name,
        "PYTHONPATH": os.pathsep.join([str(TOY.parent), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args], env=_env(), cwd=cwd, capture_output=True, text=True
    )


def _ok(*args: str, cwd: Path) -> str:
    proc = _cli(*args, cwd=cwd)
    assert proc.returncode == 0, f"parcae-runner {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_toy_architecture_composes_without_yaml(tmp_path):
    assert not list(TOY.glob("*.yaml"))
    shown = _ok("show", "arch=toy", "size=debug", "size.d_model=48", cwd=tmp_path)
    assert "arch:\n  name: toy\n  mlp_ratio: 2\nsize:\n  name: debug\n  d_model: 48\n" in shown
    refused = _cli("show", "arch=toy", "size.n_heads=4", cwd=tmp_path)
    assert refused.returncode == 2
    assert "size.n_heads=4: not a dimension of toy; its dimensions: n_layers, d_model" in refused.stderr


@pytest.mark.slow
def test_toy_architecture_trains_collects_and_reports(tmp_path, fast_overrides):
    overrides = [o for o in fast_overrides if not o.startswith("arch=")]
    overrides += ["arch=toy", "sweep=toy", "train.max_steps=4", "train.checkpoint.steps=[4]"]
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).partition("=")[2])

    _ok("train", *overrides, cwd=tmp_path)
    _ok("collect", "toy", "--results", str(results), cwd=tmp_path)
    _ok("report", "toy", "--results", str(results), cwd=tmp_path)

    table = pd.read_parquet(results / "toy" / "results.parquet")
    assert set(table["arch"]) == {"toy"} and table["flops"].notna().all() and table["flops"].max() > 0
    assert (results / "toy" / "report" / "index.html").is_file()
