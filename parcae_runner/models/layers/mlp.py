"""Position-wise feed-forward network."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``down(act(up(x)))``: ``[B, T, C] -> [B, T, hidden] -> [B, T, C]``."""

    def __init__(
        self, d_model: int, hidden: int, bias: bool = True, activation: Callable[[Tensor], Tensor] = F.gelu
    ) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.activation(self.up(x)))
