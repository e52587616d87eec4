"""Optimizers (AdamW, or Parcae's MuonAdamW) and the per-step learning-rate schedules.

* ``adamw``: AdamW with decay on matrices only.
* ``muon``: Parcae's ``MuonAdamW`` (``SandyResearch/parcae``, ``recpre/optim/muon_adamw.py``): Muon
  (:mod:`parcae_runner.train.muon`) on the 2-D hidden matrices, AdamW on everything else: embeddings and
  value-embedding tables, the head, norms, biases and whatever the model keeps off Muon (``no_muon()``: Parcae's
  injection ``A_log``, ``dt_bias``, ``B`` and readout ``C``; ``no_weight_decay()``: Mamba's ``A_log``, ...).
  One optimizer object holds both, so Lightning, the schedule and the checkpoint see a single optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from parcae_runner.models.param_roles import muon_parameter_names, opted_out
from parcae_runner.train.muon import Muon


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay: Sequence[str], exclude: Sequence[nn.Parameter] = ()
) -> list[dict]:
    """Split parameters into a decayed group (matrices) and a non-decayed one (``exclude``: left out).

    A parameter gets no decay if it has fewer than 2 dims (biases, norm gains) or its name
    contains one of ``no_decay``. Architectures can also opt parameters out (Mamba's A_log, D)
    by listing their names in a ``no_weight_decay()`` method, the convention of timm/mamba.
    """
    opt_out = opted_out(model, "no_weight_decay")
    skip = {id(p) for p in exclude}
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in skip:
            continue
        if p.ndim < 2 or name in opt_out or any(s in name for s in no_decay):
            keep.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def muon_parameters(model: nn.Module, no_decay: Sequence[str]) -> list[nn.Parameter]:
    """The parameters Muon trains, in the model's order (the rule: :func:`models.param_roles.muon_parameter_names`)."""
    names = muon_parameter_names(model, no_decay)
    return [p for name, p in model.named_parameters() if name in names]


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over two: :class:`Muon` on its groups, AdamW on the rest. The param groups (Muon's first) and
    the per-parameter state are shared with the two inner optimizers, so ``state_dict``, ``load_state_dict``,
    schedulers and gradient clipping act on all of it."""

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw
        self._n_muon = len(muon.param_groups)
        super().__init__([*muon.param_groups, *adamw.param_groups], defaults={})
        self._link()

    def _link(self) -> None:
        self.muon.param_groups = self.param_groups[: self._n_muon]
        self.adamw.param_groups = self.param_groups[self._n_muon :]
        self.muon.state = self.adamw.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._link()  # loading builds new group dicts and a new state mapping

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss


def lr_lambda(
    schedule: str, lr: float, min_lr: float, warmup_steps: int, max_steps: int, cooldown_fraction: float = 0.5
) -> Callable[[int], float]:
    """Multiplier of ``lr`` at optimizer step ``step``: linear warmup from lr/warmup to lr, then

    * ``cosine`` / ``linear``: decay to ``min_lr`` at ``max_steps``;
    * ``wsd`` (warm-up, stable, decay): constant, then linear to ``min_lr`` over the last ``cooldown_fraction``
      of ``max_steps`` (Parcae's ``trapezoid`` is warm-up 0, cooldown 0.5, min_lr 0: Hägele et al., arXiv
      2405.18392; ``recpre`` schedulers);
    * ``constant``.
    """
    floor = min_lr / lr
    decay_start = max(warmup_steps, max_steps - round(cooldown_fraction * max_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        if schedule == "wsd":
            if step < decay_start:
                return 1.0
            progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
            return floor + (1 - floor) * (1 - progress)
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return floor + (1 - floor) * shape

    return factor


def _ns_dtype(setting: str, device_type: str) -> torch.dtype | None:
    """``auto``: bf16 on GPUs (as Parcae and nanochat), the gradient's dtype elsewhere."""
    if setting == "bf16" or (setting == "auto" and device_type == "cuda"):
        return torch.bfloat16
    return torch.float32 if setting == "fp32" else None


def build_muon_adamw(model: nn.Module, train_cfg, device_type: str = "cpu") -> MuonAdamW:
    """``train.optimizer=muon``: Muon on :func:`muon_parameters` with ``train.muon.*``, AdamW on the rest with
    ``train.lr``, betas, eps and ``train.weight_decay`` (Parcae: 0)."""
    m = train_cfg.muon
    matrices = muon_parameters(model, list(train_cfg.no_decay))
    muon = Muon(
        matrices,
        lr=train_cfg.lr if m.lr is None else m.lr,
        weight_decay=m.weight_decay,
        momentum=m.momentum,
        nesterov=m.nesterov,
        ns_coefficients=m.ns_coefficients,
        ns_steps=m.ns_steps,
        normuon=m.normuon,
        beta2=m.beta2,
        cautious=m.cautious_weight_decay,
        momentum_start=m.momentum_start,
        momentum_warmup_steps=m.momentum_warmup_steps,
        weight_decay_steps=train_cfg.max_steps if m.weight_decay_to_zero else None,
        ns_dtype=_ns_dtype(m.ns_dtype, device_type),
    )
    groups = parameter_groups(model, train_cfg.weight_decay, list(train_cfg.no_decay), exclude=matrices)
    adamw = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    return MuonAdamW(muon, adamw)


def build_optimizer(
    model: nn.Module, train_cfg, device_type: str = "cpu"
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The ``train.optimizer`` (adamw | muon) + a per-step LambdaLR, from the ``train`` config group."""
    opt: torch.optim.Optimizer
    if train_cfg.get("optimizer", "adamw") == "muon":
        opt = build_muon_adamw(model, train_cfg, device_type)
    else:
        groups = parameter_groups(model, train_cfg.weight_decay, list(train_cfg.no_decay))
        # fused/foreach kernels change summation order between devices; keep the default per device
        opt = torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2), eps=train_cfg.eps)
    factor = lr_lambda(
        train_cfg.schedule,
        train_cfg.lr,
        train_cfg.min_lr,
        train_cfg.warmup_steps,
        train_cfg.max_steps,
        train_cfg.get("cooldown_fraction", 0.5),
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
