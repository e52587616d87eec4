"""A new architecture is one folder plus its tests: the toy of ``toy_arch/`` (its model, its registration and
its arch YAML) trains through the CLI, collects and reports with no edit to the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from parcae_runner.config import config_dir

TOY = Path(__file__).parent / "toy_arch"
REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"parcae-runner {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
def test_toy_architecture_trains_collects_and_reports(tmp_path, fast_overrides):
    # the config tree with one file added: the toy's arch YAML
    configs = tmp_path / "launch_configs"
    shutil.copytree(config_dir(), configs)
    shutil.copy(TOY / "arch.yaml", configs / "arch" / "toy.yaml")
    env = {
        **os.environ,
        "PARCAE_CONFIG_DIR": str(configs),
        "PARCAE_EXTRA_ARCHS": TOY.name,
        "PYTHONPATH": os.pathsep.join([str(TOY.parent), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    overrides = [o for o in fast_overrides if not o.startswith("arch=")]
    overrides += ["arch=toy", "sweep=toy", "train.max_steps=4", "train.checkpoint.steps=[4]"]
    results = Path(next(o for o in overrides if o.startswith("results_dir=")).partition("=")[2])

    _cli("train", *overrides, env=env, cwd=tmp_path)
    _cli("collect", "toy", "--results", str(results), env=env, cwd=tmp_path)
    _cli("report", "toy", "--results", str(results), env=env, cwd=tmp_path)

    table = pd.read_parquet(results / "toy" / "results.parquet")
    assert set(table["arch"]) == {"toy"} and table["flops"].notna().all() and table["flops"].max() > 0
    assert (results / "toy" / "report" / "index.html").is_file()
