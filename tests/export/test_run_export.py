"""Trained checkpoints of every architecture export to folders that stock transformers loads
with the same logits; an exported folder starts a new run with the same weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from parcae_runner.config import compose_run_config
from parcae_runner.export.run_export import checkpoint_path, load_checkpoint_model, open_run
from parcae_runner.train.runner import train


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["pythia", "mamba", "rwkv4"])
def test_trained_checkpoint_exports_with_same_logits(arch, fast_overrides, tmp_path):
    overrides = [o for o in fast_overrides if not o.startswith("arch=")] + [
        f"arch={arch}",
        "train.max_steps=12",
        "train.val_batches=1",
        "train.checkpoint.schedule=list",
        "train.checkpoint.steps=[6]",
    ]
    run_dir = train(compose_run_config(overrides)).path
    out = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "export", str(run_dir), "--all-checkpoints"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in (run_dir / "hf").iterdir()) == ["checkpoint-12", "checkpoint-6"]

    rd, cfg, run = open_run(run_dir)
    ours = load_checkpoint_model(rd, cfg, run, checkpoint_path(rd, 12)[1])
    hf = AutoModelForCausalLM.from_pretrained(run_dir / "hf" / "checkpoint-12", dtype=torch.float32).eval()
    tokens = torch.randint(0, run["data"]["vocab_size"], (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(tokens) - hf(tokens).logits).abs().max().item()
    assert diff < 1e-4, diff

    tok = AutoTokenizer.from_pretrained(run_dir / "hf" / "checkpoint-12")
    text = "def parse(path):\n    return open(path).read()  # ünïcode"
    assert tok.decode(tok(text).input_ids) == text

    # the other way: a new run initialised from the export starts from the same weights
    start = train(
        compose_run_config(
            overrides
            + [
                f"train.init_from={run_dir / 'hf' / 'checkpoint-12'}",
                "run_name=from-export",
                "train.max_steps=1",
                "train.checkpoint.steps=[0]",
            ]
        )
    ).path
    rd2, cfg2, run2 = open_run(start)
    again = load_checkpoint_model(rd2, cfg2, run2, checkpoint_path(rd2, 0)[1])
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
