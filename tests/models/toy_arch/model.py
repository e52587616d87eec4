"""A causal toy LM: each token sees the running mean of the embeddings up to it, then an MLP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ToyHParams:
    name: str = "toy"
    mlp_ratio: int = 2


class ToyModel(nn.Module):
    def __init__(self, hparams: ToyHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__()
        self.hparams, self.dims, self.vocab_size = hparams, dict(dims), vocab_size
        d = dims["d_model"]
        self.embed = nn.Embedding(vocab_size, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(d), nn.Linear(d, hparams.mlp_ratio * d), nn.GELU(), nn.Linear(hparams.mlp_ratio * d, d)
            )
            for _ in range(dims["n_layers"])
        )
        self.lm_head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.embed(input_ids)  # [B, T, d]
        steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        x = x + torch.cumsum(x, dim=1) / steps  # causal: a prefix mean
        for block in self.blocks:
            x = x + block(x)
        return self.lm_head(x)
