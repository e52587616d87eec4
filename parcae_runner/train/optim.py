"""AdamW with decay on matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float, no_decay: Sequence[str]) -> list[dict]:
    """Split parameters into a decayed group (matrices) and a non-decayed one.

    A parameter gets no decay if it has fewer than 2 dims (biases, norm gains) or its name
    contains one of ``no_decay``. Architectures can also opt parameters out (Mamba's A_log, D)
    by listing their names in a ``no_weight_decay()`` method, the convention of timm/mamba.
    """
    opt_out = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name in opt_out or any(s in name for s in no_decay):
            keep.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def lr_lambda(schedule: str, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """Multiplier of ``lr`` at optimizer step ``step``: linear warmup from lr/warmup to lr,
    then ``cosine`` / ``linear`` decay to ``min_lr`` at ``max_steps``, or ``constant``."""
    floor = min_lr / lr

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return floor + (1 - floor) * shape

    return factor


def build_optimizer(model: nn.Module, train_cfg) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW + a per-step LambdaLR, from the ``train`` config group."""
    groups = parameter_groups(model, train_cfg.weight_decay, list(train_cfg.no_decay))
    # fused/foreach kernels change summation order between devices; keep the default per device
    opt = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lr_lambda(train_cfg.schedule, train_cfg.lr, train_cfg.min_lr, train_cfg.warmup_steps, train_cfg.max_steps),
    )
    return opt, sched
