"""Muon against an explicit fp64 reference written from the equations (parcae_runner/train/muon.py docstring),
and MuonAdamW's split of a model's parameters and its state round trip."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from parcae_runner.config.schema import TrainConfig
from parcae_runner.models import build_model
from parcae_runner.train.muon import POLAR_EXPRESS, Muon
from parcae_runner.train.optim import build_optimizer, muon_parameters

KELLER = (3.4445, -4.7750, 2.0315)


def reference_ns(u: np.ndarray, table, steps: int, safety: float, eps: float) -> np.ndarray:
    """Newton-Schulz on the wide orientation, written with numpy (no torch)."""
    tall = u.shape[0] > u.shape[1]
    x = u.T if tall else u
    x = x / (np.sqrt((x**2).sum()) * (1 + safety) + eps)
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def reference_step(w, g, buf, v, lr, wd, mu, beta2, table, safety, eps, normuon, cautious):
    """One update of the equations: Nesterov momentum, NS, NorMuon, shape-scaled lr, (cautious) decoupled decay."""
    buf = mu * buf + (1 - mu) * g
    u = (1 - mu) * g + mu * buf
    o = reference_ns(u, table, 5, safety, eps)
    if normuon:
        rows, cols = o.shape
        axis = 1 if rows >= cols else 0
        v_mean = (o**2).mean(axis=axis, keepdims=True)
        v = beta2 * v + (1 - beta2) * v_mean
        scaled = o / np.sqrt(np.maximum(v, 1e-10))
        o = scaled * np.sqrt((o**2).sum()) / np.sqrt((scaled**2).sum())
    lr_adj = lr * math.sqrt(max(1.0, w.shape[0] / w.shape[1]))
    mask = (o * w >= 0) if cautious else np.ones_like(w)
    w = w - lr_adj * o - lr_adj * wd * mask * w
    return w, buf, v


@pytest.mark.parametrize("shape", [(24, 16), (16, 40), (20, 20)])  # tall, wide, square
@pytest.mark.parametrize(
    "options",
    [
        dict(ns_coefficients="polar_express", normuon=True, cautious=True),
        dict(ns_coefficients="keller", normuon=False, cautious=False),
    ],
)
def test_two_steps_equal_the_fp64_reference(shape, options):
    gen = np.random.default_rng(0)
    w0 = gen.standard_normal(shape)
    grads = [gen.standard_normal(shape) for _ in range(2)]
    lr, wd, beta2 = 0.02, 0.2, 0.95
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Muon(
        [p], lr=lr, weight_decay=wd, momentum=0.95, beta2=beta2, momentum_start=0.85, momentum_warmup_steps=3,
        weight_decay_steps=4, **options,
    )  # fmt: skip
    polar = options["ns_coefficients"] == "polar_express"
    table, safety, eps = (POLAR_EXPRESS, 0.02, 1e-6) if polar else ((KELLER,), 0.0, 1e-7)
    w, buf = w0, np.zeros(shape)
    rows, cols = shape
    v = np.zeros((rows, 1) if rows >= cols else (1, cols))
    for t, g in enumerate(grads):
        p.grad = torch.tensor(g)
        opt.step()
        mu = 0.85 + (0.95 - 0.85) * min(t / 3, 1.0)  # momentum warm-up over 3 updates
        wd_t = wd * (1 - t / 4)  # linear decay to 0 at 4 updates
        w, buf, v = reference_step(
            w, g, buf, v, lr, wd_t, mu, beta2, table, safety, eps, options["normuon"], options["cautious"]
        )
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=0, atol=1e-6)
    assert abs(p.detach().numpy() - w0).max() > 1e-3  # it moved


def test_polar_express_orthogonalises():
    from parcae_runner.train.muon import newton_schulz

    u = torch.randn(64, 32, dtype=torch.float64)
    o = newton_schulz(u, "polar_express", 5)
    singular = torch.linalg.svdvals(o)
    assert singular.min() > 0.8 and singular.max() < 1.2, singular


def test_cautious_decay_spares_entries_whose_update_disagrees():
    # lr -> update O is orthogonal-ish; with wd huge the decay dominates only where O * W >= 0
    p = torch.nn.Parameter(torch.randn(8, 8, dtype=torch.float64))
    p.grad = torch.randn(8, 8, dtype=torch.float64)
    w0 = p.detach().clone()
    opt = Muon([p], lr=1e-9, weight_decay=1e8, normuon=False, cautious=True)
    opt.step()
    decayed = (p.detach() - w0).abs() > 1e-3 * w0.abs()
    assert 0 < decayed.sum() < 64  # some entries decayed, not all


def muon_cfg(**train):
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), {"optimizer": "muon", **train})


def test_parcae_matrices_on_muon_the_rest_on_adamw():
    model = build_model({"name": "parcae"}, "debug", 512)
    names = {id(p): n for n, p in model.named_parameters()}
    on_muon = {names[id(p)] for p in muon_parameters(model, ["bias", "norm"])}
    assert on_muon, "no matrix on Muon"
    assert all(n.startswith(("prelude.", "core.", "coda.")) for n in on_muon), on_muon
    assert not any("norm" in n or "value_embeds" in n or n.startswith("injection") for n in on_muon)
    assert not any(n.startswith("readout") for n in on_muon)
    opt, _ = build_optimizer(model, muon_cfg())
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))


def test_muon_adamw_state_round_trip_continues_identically():
    torch.manual_seed(0)
    model = build_model({"name": "parcae"}, "debug", 512)
    x = torch.randint(0, 512, (2, 16))

    def train(opt, sched, steps):
        for _ in range(steps):
            model.set_depth_context(0, sched.last_epoch, 0)  # like-init noise as a function of the step
            opt.zero_grad()
            model(x, num_steps=2, num_grad_steps=1).float().pow(2).mean().backward()
            opt.step()
            sched.step()

    cfg = muon_cfg(max_steps=6, schedule="wsd", warmup_steps=0)
    opt, sched = build_optimizer(model, cfg)
    train(opt, sched, 3)
    # state_dict() holds the live state tensors: copy them before training on
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))
    train(opt, sched, 3)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(saved[0])
    opt2, sched2 = build_optimizer(model, cfg)
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    train(opt2, sched2, 3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
