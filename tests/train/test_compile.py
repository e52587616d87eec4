"""train.compile and train.activation_checkpointing change speed and memory, not the numbers: every registered
architecture trains to the same loss compiled as eager (torch.compile with inductor, on CPU), and checkpointed
blocks give the same loss and gradients as plain ones."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from parcae_runner.config import compose_run_config
from parcae_runner.models import ARCHITECTURES, build_model
from parcae_runner.train.runner import train
from parcae_runner.train.speed import blocks, checkpoint_blocks, compile_model, is_looped

NAMES = sorted(ARCHITECTURES)
VOCAB = 512


def debug_model(name: str) -> torch.nn.Module:
    cfg = compose_run_config([f"arch={name}", "size=debug"])
    torch.manual_seed(0)
    return build_model(cfg.arch, "debug", VOCAB)


def loss_and_grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict]:
    if is_looped(model):
        model.set_depth_context(0, 0, 0)  # the same drawn depth for both models
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", NAMES)
def test_activation_checkpointing_same_loss_and_grads(name):
    plain = debug_model(name).train()
    checkpointed = copy.deepcopy(plain)
    assert checkpoint_blocks(checkpointed) == len(blocks(plain)) > 0
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, VOCAB, (2, 2, 32), generator=g)
    loss, grads = loss_and_grads(plain, x, y)
    loss_ckpt, grads_ckpt = loss_and_grads(checkpointed, x, y)
    assert loss_ckpt == pytest.approx(loss, abs=1e-6)
    assert grads.keys() == grads_ckpt.keys() and grads
    for key in grads:
        torch.testing.assert_close(grads_ckpt[key], grads[key], rtol=1e-5, atol=1e-6, msg=key)
    # in place: the same parameter names (checkpoints, exports)
    assert list(checkpointed.state_dict()) == list(plain.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_compile_is_in_place(name):
    model = debug_model(name)
    names = list(model.state_dict())
    what = compile_model(model)
    # compiles lazily: nothing traced yet, and the parameter names are the plain model's
    assert list(model.state_dict()) == names
    assert ("blocks" in what) == is_looped(model)


def _train_30_steps(name: str, compile: bool, overrides: list[str]) -> tuple[float, set[str]]:
    cfg = compose_run_config(
        [
            *overrides,
            f"arch={name}",
            # tiny: inductor unrolls the reference scans over the sequence (mamba, rwkv on CPU)
            "data.seq_len=16",
            "train.batch_size=4",
            "train.micro_batch_size=4",
            "train.max_steps=30",
            "train.log_interval=1",
            "train.val_interval=1000",
            "train.val_batches=1",
            "train.checkpoint.schedule=none",
            f"train.compile={str(compile).lower()}",
            f"run_name={name}-{'compiled' if compile else 'eager'}",
        ]
    )
    run_dir = train(cfg)
    records = [json.loads(line) for line in run_dir.metrics_file.read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r and r.get("step") == 30]
    weights = load_file(run_dir.checkpoints / "checkpoint-30" / "model.safetensors")
    return losses[-1], set(weights)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_trains_to_the_eager_loss(name, fast_overrides):
    eager, eager_keys = _train_30_steps(name, False, fast_overrides)
    compiled, compiled_keys = _train_30_steps(name, True, fast_overrides)
    assert abs(compiled - eager) <= 1e-3, (name, eager, compiled)
    # the checkpoint of a compiled run is the plain model's (no _orig_mod. prefixes)
    assert compiled_keys == eager_keys
