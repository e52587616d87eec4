"""The pre-norm transformer block of Parcae and its GPT baseline (nanochat lineage).

``x = x + Attn(RMSNorm(x)); x = x + MLP(RMSNorm(x))`` with

* attention: fused per-head QKV (the layout of :class:`FusedAttention`), RMSNorm on q and k per head
  (QK-norm), full rotary on q and k, causal SDPA, no biases;
* MLP: ``down(relu(up(x))^2)`` at 4x width, no biases;
* an optional *value embedding* (nanochat / modded-nanogpt): a per-layer token-embedding table whose row is
  added to v, scaled per head by ``2 * sigmoid(W_g x[..., :32])`` (1 at init, since ``W_g`` starts at zero).
  Which layers have one is :func:`has_value_embedding`.

The attention output projection and the MLP down projection are zero at init, so every block starts as the
identity: that is what keeps a looped core (the same blocks applied R times) stable at the first step.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_embedding, init_norm, small_init_std
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.layers.mlp import MLP
from parcae_runner.models.layers.rotary import RotaryEmbedding
from parcae_runner.models.transformer.attention import FusedAttention

# input channels of the value-embedding gate (nanochat's ve_gate_channels)
VE_GATE_CHANNELS = 32


def relu_squared(x: Tensor) -> Tensor:
    """``relu(x)^2`` (So et al. 2021, "Primer"); the MLP activation of nanochat and Parcae."""
    return F.relu(x).square()


def has_value_embedding(layer: int, n_layers: int) -> bool:
    """Alternate layers, always including the last one (nanochat's ``has_ve``).

    ``layer`` indexes the model's distinct blocks (for Parcae: prelude, then core, then coda).
    """
    return layer % 2 == (n_layers - 1) % 2


class QKNormAttention(FusedAttention):
    """Causal self-attention with per-head RMSNorm on q and k and an optional value embedding.

    ``qkv`` is laid out per head ``[q_h, k_h, v_h]`` as in the parent class; nothing has a bias.
    """

    def __init__(self, d_model: int, n_heads: int, norm_eps: float, value_embedding: bool) -> None:
        super().__init__(d_model, n_heads, bias=False)
        # QK-norm bounds the attention logits whatever the residual-stream scale (which a loop can grow)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=norm_eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=norm_eps)
        self.ve_gate = nn.Linear(min(VE_GATE_CHANNELS, d_model), n_heads, bias=False) if value_embedding else None

    @torch.no_grad()
    def init_weights(self) -> None:
        # q, k and v each get their own orthogonal d x d matrix, as if they were separate projections
        d, H, D = self.proj.in_features, self.n_heads, self.head_dim
        per_head = self.qkv.weight.view(H, 3, D, d)
        for j in range(3):
            block = torch.empty(d, d, dtype=per_head.dtype, device=per_head.device)
            nn.init.orthogonal_(block)
            per_head[:, j].copy_(block.view(H, D, d))
        nn.init.zeros_(self.proj.weight)
        init_norm(self.q_norm)
        init_norm(self.k_norm)
        if self.ve_gate is not None:
            nn.init.zeros_(self.ve_gate.weight)  # gate 2 * sigmoid(0) = 1

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None, bias: Tensor | None, ve: Tensor | None = None
    ) -> Tensor:
        """x: ``[B, T, C]``; rope: cos, sin ``[T, D]``; bias: ``[H or 1, T, T]`` or None (causal); ve: ``[B, T, C]``
        or None. Returns ``[B, T, C]``. The parent's signature, plus the value embedding."""
        B, T, _ = x.shape
        q, k, v = self.heads(x)  # each [B, H, T, D]
        if self.ve_gate is not None:
            if ve is None:
                raise ValueError("this layer has a value embedding: pass ve")
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.ve_gate.in_features]))  # [B, T, H]
            v = v + (gate.unsqueeze(-1) * ve.view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)
        return self.out(self.attend(self.q_norm(q), self.k_norm(k), v, rope, bias))


class QKNormBlock(nn.Module):
    """Pre-norm residual block: ``x + Attn(norm1(x))``, then ``+ MLP(norm2(x))``; ``[B, T, C] -> [B, T, C]``."""

    def __init__(
        self, d_model: int, n_heads: int, norm_eps: float, mlp_ratio: int = 4, value_embedding: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(d_model, eps=norm_eps)
        self.attn = QKNormAttention(d_model, n_heads, norm_eps, value_embedding)
        self.norm2 = nn.RMSNorm(d_model, eps=norm_eps)
        self.mlp = MLP(d_model, mlp_ratio * d_model, bias=False, activation=relu_squared)

    @property
    def has_value_embedding(self) -> bool:
        return self.attn.ve_gate is not None

    @torch.no_grad()
    def init_weights(self) -> None:
        """Orthogonal input projections, zero output projections (the block starts as the identity), norms 1."""
        init_norm(self.norm1)
        init_norm(self.norm2)
        self.attn.init_weights()
        nn.init.orthogonal_(self.mlp.up.weight)  # [4d, d]: orthonormal columns
        nn.init.zeros_(self.mlp.down.weight)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, ve: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), (cos, sin), None, ve)
        return x + self.mlp(self.norm2(x))


def value_embedding_tables(
    vocab_size: int, d_model: int, n_layers: int, enabled: bool
) -> tuple[nn.ModuleDict, list[bool]]:
    """One ``vocab x d`` table per value-embedding layer, keyed by the layer index as a string.

    Returns the tables and, per layer, whether it has one.
    """
    has = [enabled and has_value_embedding(i, n_layers) for i in range(n_layers)]
    tables = nn.ModuleDict({str(i): nn.Embedding(vocab_size, d_model) for i in range(n_layers) if has[i]})
    return tables, has


@torch.no_grad()
def init_qk_norm_embeddings(model: LanguageModel) -> float:
    """Initialise ``model.embed`` and every ``model.value_embeds`` table with ``N(0, small_init_std(d))``; returns
    the std, which ``finish_qk_norm_init`` gives an untied head."""
    std = small_init_std(model.dims["d_model"])
    init_embedding(model.embed, std)
    for table in cast(nn.ModuleDict, model.value_embeds).values():
        init_embedding(cast(nn.Embedding, table), std)
    return std


@torch.no_grad()
def finish_qk_norm_init(model: LanguageModel, std: float) -> None:
    """The last step of a QK-norm model's ``init_weights``: an untied head ``N(0, std)``, an empty rotary cache."""
    if not model.hparams.tie_embeddings:
        nn.init.normal_(model.lm_head.weight, std=std)
    cast(RotaryEmbedding, model.rotary).reset_cache()
