"""Which of a model's parameters each optimizer rule treats how: one rule, read by the optimizer that applies it
(``train.optim``) and by the memory plan that counts its states (``models.memory``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def opted_out(model: nn.Module, method: str) -> set[str]:
    """The parameter names a model lists in its ``no_weight_decay()`` / ``no_muon()`` method (timm/mamba's
    convention), or none."""
    return set(getattr(model, method)()) if hasattr(model, method) else set()


def muon_parameter_names(model: nn.Module, no_decay: Sequence[str] = ("bias", "norm")) -> set[str]:
    """The hidden 2-D matrices Muon trains under ``train.optimizer=muon``: not in an ``nn.Embedding``, not the head
    (``lm_head``), not named by ``no_decay``, ``no_weight_decay()`` or ``no_muon()`` (a tied head is the embedding,
    so it is left out too)."""
    out_of_muon = opted_out(model, "no_weight_decay") | opted_out(model, "no_muon")
    tables = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head = getattr(model, "lm_head", None)
    if isinstance(head, nn.Module):
        tables |= {id(p) for p in head.parameters()}
    return {
        name
        for name, p in model.named_parameters()
        if p.requires_grad
        and p.ndim == 2
        and id(p) not in tables
        and name not in out_of_muon
        and not any(s in name for s in no_decay)
    }
