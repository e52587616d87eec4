"""Gradient clipping reuses the divergence guard's norm: the gradients are read once per step, and a run clips exactly
as it did when Lightning computed the norm itself."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from parcae_runner.train.divergence import DivergenceGuard, grad_norms
from parcae_runner.train.module import LanguageModelModule


def _grads(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 32), torch.nn.Linear(32, 50))
    model(torch.randint(0, 50, (4, 8))).pow(2).sum().backward()
    return model


def test_the_clipping_norm_is_clip_grad_norms_bit_for_bit_and_clips_alike():
    a, b = _grads(), _grads()
    norm, clip_norm = grad_norms([p.grad for p in a.parameters()])
    assert norm.dtype == torch.float64 and float(norm) == pytest.approx(float(clip_norm), rel=1e-6)
    torch.nn.utils.clip_grads_with_norm_(list(a.parameters()), 0.1, clip_norm)
    expected = torch.nn.utils.clip_grad_norm_(list(b.parameters()), 0.1)
    assert torch.equal(clip_norm, expected)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters(), strict=True))


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


class _TinyReusingTheNorm(_Tiny):
    clip_norm = None
    configure_gradient_clipping = LanguageModelModule.configure_gradient_clipping


def _fit(module: L.LightningModule, callbacks: list) -> list[torch.Tensor]:
    torch.manual_seed(1)
    data = TensorDataset(torch.randn(64, 8) * 10, torch.randn(64, 1) * 10)  # large gradients: every step clips
    trainer = L.Trainer(
        max_steps=12,
        gradient_clip_val=0.05,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=8))
    return [p.detach().clone() for p in module.parameters()]


def test_a_run_clips_with_the_guards_norm_as_lightning_clipped(tmp_path, monkeypatch):
    stock = _fit(_Tiny(), [])  # Lightning's own clipping: clip_grad_norm_ every step
    calls = []
    original = torch.nn.utils.clip_grad_norm_

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counted)
    guard = DivergenceGuard(tmp_path, max_skipped_in_a_row=3, loss_guardrail=None, after=0)
    ours = _fit(_TinyReusingTheNorm(), [guard])
    assert not calls  # the guard's norm was used: no second pass over the gradients
    assert all(torch.equal(p, q) for p, q in zip(stock, ours, strict=True))  # the same weights, bit for bit
