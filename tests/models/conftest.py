"""Helpers every architecture's tests share (fixtures, so test modules need no import path)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn

from parcae_runner.models import ARCHITECTURES


def reference_config(name: str, **overrides) -> dict:
    """``{"name": name}`` plus ``kernel_impl="reference"`` where the architecture has a kernel choice
    (Triton's CPU interpreter is slow; the kernels' own tests compare the two)."""
    fields = {f.name for f in dataclasses.fields(ARCHITECTURES[name].hparams_cls)}
    return {"name": name, **({"kernel_impl": "reference"} if "kernel_impl" in fields else {}), **overrides}


def check_causal(model: nn.Module, vocab: int, t: int = 13) -> None:
    """Changing token ``t`` leaves the logits before ``t`` unchanged and changes those from ``t`` on."""
    tokens = torch.randint(0, vocab, (2, 24))
    changed = tokens.clone()
    changed[:, t] = (tokens[:, t] + 1) % vocab
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert (a[:, t:] - b[:, t:]).abs().amax() > 1e-3


@pytest.fixture
def arch_config() -> Callable[..., dict]:
    return reference_config


@pytest.fixture
def assert_causal() -> Callable[..., None]:
    return check_causal
