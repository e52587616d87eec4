"""parcae_baseline (formerly `gpt`): the non-looped baseline of Parcae.

Source: arXiv 2604.12946; ``SandyResearch/parcae``, ``parcae_lm/models/gpt``.

``embed -> n_layers x QKNormBlock -> RMSNorm -> tied head``, with the blocks of
:mod:`parcae_runner.models.layers.qk_norm_block` (pre-norm RMSNorm, QK-norm, full RoPE at base 50k, ReLU^2 MLP,
no biases, zero-initialised output projections) and, by default, value embeddings on alternate layers.

Sizes are Parcae's table: the baseline of a size has as many blocks as the Parcae model of that size has distinct
blocks (prelude + core + coda), at the same width and head count (head dim 128).

How the size names count parameters: the names (140m, 370m, 770m, 1.3b) are *total* parameters at Parcae's
vocabulary of 32,768, counting the tied token embedding once and the value-embedding tables (one
``vocab x d`` table per value-embedding layer, half the layers). Without value embeddings
(``value_embeddings=False``) a model has about half the parameters its name says; see
``tests/models/test_architectures.py`` for the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_norm
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.layers.qk_norm_block import (
    QKNormBlock,
    finish_qk_norm_init,
    init_qk_norm_embeddings,
    value_embedding_tables,
)
from parcae_runner.models.layers.rotary import RotaryEmbedding


@dataclass
class ParcaeBaselineHParams:
    name: str = "parcae_baseline"
    norm_eps: float = 1e-6
    # Parcae's RoPE base
    rope_base: float = 50000.0
    # MLP hidden width = mlp_ratio * d_model
    mlp_ratio: int = 4
    # nanochat-style value embeddings on alternate layers (most of the parameters the size names count)
    value_embeddings: bool = True
    tie_embeddings: bool = True


class ParcaeBaselineModel(LanguageModel):
    """Decoder-only LM: ``input_ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, hparams: ParcaeBaselineHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__(hparams, dims, vocab_size)
        d_model, n_heads, n_layers = dims["d_model"], dims["n_heads"], dims["n_layers"]
        self.value_embeds, has_ve = value_embedding_tables(vocab_size, d_model, n_layers, hparams.value_embeddings)
        self.rotary = RotaryEmbedding(d_model // n_heads, 1.0, hparams.rope_base)
        self.blocks = nn.ModuleList(
            QKNormBlock(d_model, n_heads, hparams.norm_eps, hparams.mlp_ratio, has_ve[i]) for i in range(n_layers)
        )
        self.norm = nn.RMSNorm(d_model, eps=hparams.norm_eps)
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        self.tie_head()
        std = init_qk_norm_embeddings(self)
        for block in cast(Iterable[QKNormBlock], self.blocks):
            block.init_weights()
        init_norm(self.norm)
        finish_qk_norm_init(self, std)

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        x = self.embed(input_ids)  # [B, T, C]
        cos, sin = self.rotary(input_ids.shape[1], x.device)  # [T, D] each
        for i, block in enumerate(self.blocks):
            ve = self.value_embeds[str(i)](input_ids) if block.has_value_embedding else None  # [B, T, C]
            x = block(x, cos, sin, ve)
        return self.lm_head(self.norm(x))  # [B, T, V]
