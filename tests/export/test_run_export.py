"""Trained checkpoints of every architecture export to folders that stock transformers loads
with the same logits; an exported folder starts a new run with the same weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from parcae_runner.config import compose_run_config
from parcae_runner.runs import checkpoint_path, open_run
from parcae_runner.runs.checkpoints import load_checkpoint_model
from parcae_runner.train.runner import train


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["pythia", "mamba", "rwkv4", "gpt2", "llama", "mistral", "bloom"])
def test_trained_checkpoint_exports_with_same_logits(arch, fast_overrides, tmp_path):
    # trained weights at `debug`; random weights at `14m` are in test_hf_export.py (training a 64-layer
    # 14m Mamba through the pure-torch scan takes minutes on a CPU)
    size, steps = "debug", 12
    overrides = [o for o in fast_overrides if not o.startswith(("arch=", "size="))] + [
        f"arch={arch}",
        f"size={size}",
        f"train.max_steps={steps}",
        "train.batch_size=4",
        "train.micro_batch_size=4",
        "train.val_batches=1",
        "train.checkpoint.schedule=list",
        f"train.checkpoint.steps=[{steps // 2}]",
    ]
    run_dir = train(compose_run_config(overrides)).path
    out = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "export", str(run_dir), "--all-checkpoints"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    exported = run_dir / "hf" / f"checkpoint-{steps}"
    assert sorted(p.name for p in (run_dir / "hf").iterdir()) == sorted([exported.name, f"checkpoint-{steps // 2}"])

    rd, cfg, run = open_run(run_dir)
    ours = load_checkpoint_model(rd, cfg, run, checkpoint_path(rd, steps)[1])
    hf = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    tokens = torch.randint(0, run["data"]["vocab_size"], (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(tokens) - hf(tokens).logits).abs().max().item()
    assert diff < 1e-4, diff

    tok = AutoTokenizer.from_pretrained(exported)
    text = "def parse(path):\n    return open(path).read()  # ünïcode"
    assert tok.decode(tok(text).input_ids) == text

    # the other way: a new run initialised from the export starts from the same weights
    start = train(
        compose_run_config(
            overrides
            + [f"train.init_from={exported}", "run_name=from-export", "train.max_steps=1", "train.checkpoint.steps=[0]"]
        )
    ).path
    rd2, cfg2, run2 = open_run(start)
    again = load_checkpoint_model(rd2, cfg2, run2, checkpoint_path(rd2, 0)[1])
    for (name, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_an_unknown_format_is_refused_listing_the_registered_ones():
    from parcae_runner.config.errors import ConfigError
    from parcae_runner.export.run_export import export_run
    from parcae_runner.models.formats import format_names

    with pytest.raises(ConfigError) as info:
        export_run("no-such-run", fmt="no-such-format")
    assert info.value.key == "--format"
    for name in ["hf", *format_names()]:
        assert name in str(info.value)
