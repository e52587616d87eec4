"""A trained rwkv7 run exports to BlinkDL's .pth (``--format blinkdl``), and a new run starts from that file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from parcae_runner.config import compose_run_config
from parcae_runner.runs import checkpoint_path, open_run
from parcae_runner.runs.checkpoints import load_checkpoint_model
from parcae_runner.train.runner import train


@pytest.mark.slow
def test_rwkv7_run_exports_pth_and_starts_a_run(fast_overrides, tmp_path):
    steps = 4
    overrides = [o for o in fast_overrides if not o.startswith(("arch=", "size="))] + [
        "arch=rwkv7",
        "arch.kernel_impl=reference",
        "size=debug",
        f"train.max_steps={steps}",
        "train.batch_size=2",
        "train.micro_batch_size=2",
        "train.val_batches=1",
        "train.checkpoint.schedule=list",
        f"train.checkpoint.steps=[{steps}]",
    ]
    run_dir = train(compose_run_config(overrides)).path
    cmd = [sys.executable, "-m", "parcae_runner.cli", "export", str(run_dir), "--format", "blinkdl"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    pth = run_dir / "blinkdl" / f"checkpoint-{steps}.pth"
    assert pth.is_file()

    rd, cfg, run = open_run(run_dir)
    ours = load_checkpoint_model(rd, cfg, run, checkpoint_path(rd, steps)[1])
    start = train(
        compose_run_config(
            overrides
            + [f"train.init_from={pth}", "run_name=from-pth", "train.max_steps=1", "train.checkpoint.steps=[0]"]
        )
    ).path
    rd2, cfg2, run2 = open_run(start)
    again = load_checkpoint_model(rd2, cfg2, run2, checkpoint_path(rd2, 0)[1])
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name

    # a non-rwkv7 run cannot take the .pth: exit 2 through the CLI's config-error path
    bad = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "train", "arch=pythia", "size=debug", f"train.init_from={pth}",
         f"results_dir={tmp_path / 'bad'}", *[o for o in fast_overrides if o.startswith("data.")]],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "train.init_from" in bad.stderr
