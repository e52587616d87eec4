"""Budgets: ``train.max_tokens`` or ``train.max_flops`` decides ``train.max_steps`` (at most one of them); ``show``
and ``plan`` say which."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest

from parcae_runner.cli import main
from parcae_runner.config import ConfigError, compose_run_config
from parcae_runner.models.flops import budget_source, model_costs

BASE = [
    "arch=parcae",
    "size=debug",
    "data.seq_len=64",
    "data.vocab_size=512",
    "train.batch_size=8",
    "train.micro_batch_size=8",
]


def test_max_tokens_decides_the_steps():
    cfg = compose_run_config([*BASE, "train.max_tokens=51200", "train.max_steps=3"])
    assert cfg.train.max_steps == 51200 // (8 * 64)
    assert budget_source(cfg) == "budget: train.max_tokens=5.12e+04 decides train.max_steps=100"
    tiny = compose_run_config([*BASE, "train.max_tokens=1"])
    assert tiny.train.max_steps == 1


def test_max_flops_in_either_convention():
    exact = compose_run_config([*BASE, "train.max_flops=1e12"])
    parcae = compose_run_config([*BASE, "train.max_flops=1e12", "train.flops_convention=parcae"])
    for cfg, convention in ((exact, "exact"), (parcae, "parcae")):
        per_step = model_costs(cfg, convention=convention)[2] * 8 * 64
        assert cfg.train.max_steps == round(1e12 / per_step)
        assert f"({convention} FLOP convention) decides" in budget_source(cfg)
    assert parcae.train.max_steps < exact.train.max_steps  # value-embedding lookups count as compute
    assert budget_source(compose_run_config(BASE)) == "budget: train.max_steps=200"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["train.max_tokens=1e6", "train.max_flops=1e12"], "train.max_tokens"),
        (["train.max_tokens=0"], "train.max_tokens"),
        (["train.flops_convention=kaplan"], "train.flops_convention"),
    ],
)
def test_bad_budgets(overrides, key):
    with pytest.raises(ConfigError) as exc:
        compose_run_config([*BASE, *overrides])
    assert exc.value.key == key


def test_show_names_the_budget():
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["show", *BASE, "train.max_tokens=51200"]) == 0
    assert out.getvalue().rstrip().splitlines()[-1] == "# budget: train.max_tokens=5.12e+04 decides train.max_steps=100"
