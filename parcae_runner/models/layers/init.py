"""Weight-initialisation helpers.

Each helper initialises one module in place; an architecture's ``init_weights`` says which std goes where.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def small_init_std(d_model: int) -> float:
    """``sqrt(2 / (5 d))``: Nguyen & Salazar (2019), GPT-NeoX ``small_init``, used by Pythia."""
    return math.sqrt(2.0 / (5.0 * d_model))


def wang_init_std(d_model: int, n_layers: int) -> float:
    """``2 / (L sqrt(d))``: Wang (2021, Mesh-Transformer-JAX), GPT-NeoX ``wang_init`` for the residual outputs."""
    return 2.0 / (n_layers * math.sqrt(d_model))


@torch.no_grad()
def init_linear(linear: nn.Linear, std: float) -> None:
    """Weight ``N(0, std)``, bias 0."""
    nn.init.normal_(linear.weight, mean=0.0, std=std)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


@torch.no_grad()
def init_embedding(embedding: nn.Embedding, std: float) -> None:
    nn.init.normal_(embedding.weight, mean=0.0, std=std)


@torch.no_grad()
def init_norm(norm: nn.Module) -> None:
    """Scale 1, shift 0 (LayerNorm, RMSNorm, ...; absent affine parameters are skipped)."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if weight is not None:
        nn.init.ones_(weight)
    if bias is not None:
        nn.init.zeros_(bias)
