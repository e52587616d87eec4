"""``train.flops_convention=parcae``: Parcae's ``scripts/cost.py`` FLOP model (SandyResearch/parcae), and the
recurrence sweep's budgets planned in it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from parcae_runner.launch.plan import format_plan, plan_sweep
from parcae_runner.launch.sweep_file import load_sweep
from parcae_runner.models import build_model
from parcae_runner.models.flops import arch_costs, flops_per_token_in, skip_meta_init

VOCAB, SEQ = 32768, 2048
REPO = Path(__file__).resolve().parents[2]


def _parcae_counts() -> tuple[int, int, dict]:
    """(N_non-core, N_core, dims) of parcae 140m, from its named parameters: every parameter but the token
    embedding (``embed.weight``, which the tied head shares), value-embedding tables included."""
    with torch.device("meta"), skip_meta_init():
        model = build_model({"name": "parcae"}, "140m", VOCAB)
    named = dict(model.named_parameters())  # shared (tied) parameters appear once
    assert "lm_head.weight" not in named  # tied: the head is the embedding, left out with it
    n_core = sum(p.numel() for n, p in named.items() if n.startswith("core."))
    n_rest = sum(p.numel() for n, p in named.items() if not n.startswith(("core.", "embed.")))
    assert sum(p.numel() for n, p in named.items() if n.startswith("value_embeds.")) == 3 * VOCAB * 768
    return n_rest, n_core, dict(model.dims)


def _parcae_formula(n_rest: int, n_core: int, dims: dict, r: int, k: int, seq: int = SEQ) -> float:
    """6 N_non-core + (2R + 4k) N_core + attention.

    Attention (assumed: Parcae's notes give the formula's shape, not cost.py's attention term): nanochat's
    ``12 * layers * d * seq`` per token, i.e. each layer's score and value products count as ``2 * d * seq``
    weights, weighted as that layer's weights are (6 outside the loop, 2R + 4k inside). With it the 140M model at
    R = 8, k = 4 costs 1.36 GFLOP per token, the figure Parcae's formula gives (0.74B tokens per 1e18 FLOPs).
    """
    d = dims["d_model"]
    outside, inside = dims["n_prelude"] + dims["n_coda"], dims["n_core"]
    attention = 6 * outside * 2 * d * seq + (2 * r + 4 * k) * inside * 2 * d * seq
    return 6 * n_rest + (2 * r + 4 * k) * n_core + attention


def test_parcae_convention_equals_parcaes_formula_at_140m():
    n_rest, n_core, dims = _parcae_counts()
    expected = _parcae_formula(n_rest, n_core, dims, r=8, k=4)
    got = arch_costs({"name": "parcae", "mean_recurrence": 8, "mean_backprop_depth": 4}, "140m", VOCAB, SEQ, "parcae")
    assert got[2] == pytest.approx(expected, rel=1e-12)
    assert got[2] == pytest.approx(1.36e9, rel=0.01)  # Parcae's 140M at R = 8: about 1.36 GFLOP per token
    exact = arch_costs({"name": "parcae"}, "140m", VOCAB, SEQ, "exact")[2]
    assert exact < 0.75 * got[2]  # the exact count leaves the value-embedding lookups out


def test_parcae_convention_for_a_non_looped_model_is_6n_plus_attention():
    with torch.device("meta"), skip_meta_init():
        model = build_model({"name": "parcae_baseline"}, "140m", VOCAB)
    named = dict(model.named_parameters())
    n = sum(p.numel() for name, p in named.items() if not name.startswith("embed."))
    attention = 12 * model.dims["n_layers"] * model.dims["d_model"] * SEQ
    assert flops_per_token_in(model, SEQ, "parcae") == 6 * n + attention


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="flops_convention"):
        arch_costs({"name": "parcae"}, "debug", 512, 64, "kaplan")


def test_plan_of_the_recurrence_sweep_prints_tokens_per_budget_in_parcaes_convention():
    sweep = load_sweep(REPO / "sweeps" / "recurrence.yaml")
    # the planning corpus is the embedded one (FineWeb-Edu is not cached here); the model keeps vocabulary 32,768
    runs = plan_sweep(sweep, ["data=embedded", "data.max_epochs=1e12"])
    table = format_plan(sweep, runs)
    assert "parcae convention" in table and "train.max_flops decides train.max_steps" in table
    n_rest, n_core, dims = _parcae_counts()
    assert len(runs) == 35
    for run in runs:
        r, budget = run.cfg.arch.mean_recurrence, run.cfg.train.max_flops
        assert run.cfg.train.flops_convention == "parcae" and run.cfg.arch.mean_backprop_depth == math.ceil(r / 2)
        per_token = _parcae_formula(n_rest, n_core, dims, r, math.ceil(r / 2))
        tokens_per_step = 256 * SEQ
        assert run.tokens == max(1, round(budget / per_token / tokens_per_step)) * tokens_per_step, run.point.name
        assert abs(run.tokens * per_token / budget - 1) < tokens_per_step * per_token / budget  # within one step
        line = next(row for row in table.splitlines() if row.startswith(run.point.name + " "))
        assert line.split()[2] == _tokens_text(run.tokens)
    at_8 = next(r for r in runs if r.cfg.arch.mean_recurrence == 8 and r.cfg.train.max_flops == 1e18)
    assert at_8.tokens == pytest.approx(0.735e9, rel=0.01)  # Parcae: about 0.74B tokens at 1e18, R = 8


def _tokens_text(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
