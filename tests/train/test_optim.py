import math

import torch
from torch import nn

from parcae_runner.train.optim import lr_lambda, parameter_groups


def test_warmup_then_cosine_to_min_lr():
    f = lr_lambda("cosine", lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert math.isclose(f(0), 0.1)
    assert math.isclose(f(9), 1.0)
    assert math.isclose(f(10), 1.0)
    assert math.isclose(f(60), 0.55)  # halfway: floor + (1 - floor) / 2
    assert math.isclose(f(110), 0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_linear_and_constant():
    lin = lr_lambda("linear", lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=100)
    assert math.isclose(lin(50), 0.5)
    const = lr_lambda("constant", lr=1.0, min_lr=0.0, warmup_steps=5, max_steps=100)
    assert const(4) == 1.0 and const(99) == 1.0


def test_no_decay_on_vectors_and_named_parameters():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    model.register_parameter("norm_scale", nn.Parameter(torch.ones(4, 4)))
    decay, keep = parameter_groups(model, 0.1, ["norm"])
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(keep["params"]) == 4  # linear bias, layernorm weight + bias, norm_scale


def test_wsd_is_parcaes_trapezoid():
    # warm-up 0, cooldown 0.5, min_lr 0: constant for the first half, then linear to 0
    f = lr_lambda("wsd", lr=8e-3, min_lr=0.0, warmup_steps=0, max_steps=100, cooldown_fraction=0.5)
    assert [f(s) for s in (0, 25, 49, 50)] == [1.0, 1.0, 1.0, 1.0]
    assert math.isclose(f(75), 0.5) and math.isclose(f(100), 0.0)
    assert all(f(s) >= f(s + 1) for s in range(100))
    warm = lr_lambda("wsd", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100, cooldown_fraction=0.2)
    assert math.isclose(warm(0), 0.1) and warm(79) == 1.0 and math.isclose(warm(90), 0.55)
