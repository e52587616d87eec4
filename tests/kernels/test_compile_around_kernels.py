"""train.compile on a model whose recurrence runs a Triton kernel (here through the interpreter): the compiled
graph breaks around the kernel (kernels/_host.py apply_eagerly), and loss and gradients equal eager's."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.config import compose_run_config
from parcae_runner.models import build_model
from parcae_runner.train.speed import compile_model

VOCAB = 64


def loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.float().view(-1, VOCAB), y.view(-1))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["rwkv4", "mamba", "rwkv7"])
def test_compiled_model_runs_its_triton_kernel_eagerly(arch):
    cfg = compose_run_config([f"arch={arch}", "size=debug", "arch.kernel_impl=triton"])
    torch.manual_seed(0)
    eager = build_model(cfg.arch, "debug", VOCAB).train()
    compiled = copy.deepcopy(eager)
    compile_model(compiled)
    x, y = torch.randint(0, VOCAB, (2, 1, 16), generator=torch.Generator().manual_seed(0))
    loss, grads = loss_and_grads(eager, x, y)
    loss_c, grads_c = loss_and_grads(compiled, x, y)
    assert loss_c == pytest.approx(loss, abs=1e-5)
    assert grads.keys() == grads_c.keys()
    for key in grads:
        torch.testing.assert_close(grads_c[key], grads[key], rtol=1e-4, atol=1e-5, msg=key)
