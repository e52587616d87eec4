"""The Parcae and GPT presets plan as written, and their parameter counts match the size names
of the Parcae table within 15% (tied embedding counted once, value embeddings included)."""

from __future__ import annotations

import pytest

from parcae_runner.config import config_dir
from parcae_runner.launch.plan import format_plan, plan_sweep
from parcae_runner.launch.sweep_file import load_sweep
from parcae_runner.models.flops import model_costs

PRESETS = sorted(p for p in config_dir().glob("*.yaml") if p.stem.startswith(("parcae-", "gpt-")))
NOMINAL = {"140m": 140e6, "370m": 370e6, "770m": 770e6, "1.3b": 1.3e9}


def test_there_are_eight_presets():
    assert [p.stem for p in PRESETS] == sorted(
        f"{a}-{s}" for a in ("gpt", "parcae") for s in ("small-140m", "medium-370m", "large-770m", "xlarge-1_3b")
    )


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_plans_and_matches_its_size_name(preset):
    sweep = load_sweep(preset)
    # the presets' corpora (OpenWebText, FineWeb-Edu) are not in this machine's HF cache: plan the model on the
    # embedded corpus, at the preset's own vocabulary, and let it repeat (the epoch check has its own tests)
    (run,) = plan_sweep(sweep, ["cluster=slurm_h100", "data=embedded", "data.max_epochs=1e12"])
    nominal = NOMINAL[run.cfg.size.name]
    # at the preset's vocabulary (the embedded corpus runs out of merges before 32,768 tokens)
    params = model_costs(run.cfg)[0]
    assert abs(params / nominal - 1) <= 0.15, (preset.stem, params)
    assert run.tokens > 0 and run.flops > 0
    table = format_plan(sweep, [run])
    assert f"{run.cfg.arch.name}-{run.cfg.size.name}-s{run.cfg.seed}" in table and "params" in table
