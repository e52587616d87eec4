"""Causal multi-head self-attention with a fused QKV projection and rotary embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.rotary import apply_rotary


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention.

    The fused ``qkv`` projection is laid out per head, ``[q_h, k_h, v_h]`` for ``h = 0..H-1``
    (GPT-NeoX's ``query_key_value``), so its weight maps to HF GPT-NeoX without reshuffling.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x: ``[B, T, C]``; cos, sin: ``[T, R]``. Returns ``[B, T, C]``."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, self.n_heads, 3 * self.head_dim).transpose(1, 2)  # [B, H, T, 3D]
        q, k, v = qkv.chunk(3, dim=-1)  # each [B, H, T, D]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, D]
        y = y.transpose(1, 2).reshape(B, T, C)  # [B, T, C]
        return self.proj(y)
