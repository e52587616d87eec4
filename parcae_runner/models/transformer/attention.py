"""Causal attention with MHA / GQA / MQA, RoPE, ALiBi and a sliding window.

``n_kv_heads`` key/value heads serve ``n_heads`` query heads: query head ``h`` reads kv head
``h // (n_heads // n_kv_heads)`` (HF ``repeat_kv``; Ainslie et al. 2023 GQA, Shazeer 2019 MQA when 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.rotary import apply_rotary


def alibi_slopes(n_heads: int) -> Tensor:
    """The ALiBi head slopes ``[H]`` (Press et al., 2022, "Train Short, Test Long", and their reference code).

    For ``n`` a power of two: the geometric sequence starting at and with ratio ``2^(-8/n)``. Otherwise the
    slopes of the closest smaller power of two ``p``, then every other slope of ``2p`` for the rest.
    """

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    p = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(p) + power_of_two(2 * p)[0::2][: n_heads - p]
    return torch.tensor(slopes, dtype=torch.float32)


def attention_bias(t: int, device: torch.device, slopes: Tensor | None, window: int | None) -> Tensor | None:
    """The additive score bias ``[H or 1, T, T]`` (ALiBi ``-m_h (i - j)``, ``-inf`` off the causal window);
    None when plain causal attention (``is_causal``) is all that is needed."""
    if slopes is None and window is None:
        return None
    pos = torch.arange(t, device=device)
    dist = pos[:, None] - pos[None, :]  # [T, T] = i - j
    allowed = dist >= 0
    if window is not None:
        # Mistral / HF ``sliding_window_overlay``: j > i - window
        allowed &= dist < window
    bias = torch.zeros(1, t, t, device=device)
    if slopes is not None:
        bias = -slopes.to(device)[:, None, None] * dist.float()  # [H, T, T]
    return bias.masked_fill(~allowed, float("-inf"))


class Attention(nn.Module):
    """``[B, T, C] -> [B, T, C]`` with separate q, k, v and output projections (HF LLaMA's layout)."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, bias: bool, scale: float | None = None) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        # score scale (None: 1/sqrt(head_dim)); the Backpack's GPT-2 body also divides by the layer number
        self.scale = scale
        self.head_dim = d_model // n_heads
        self.q = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.o = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, bias: Tensor | None) -> Tensor:
        """x: ``[B, T, C]``; rope: cos, sin ``[T, R]`` or None; bias: ``[H or 1, T, T]`` or None (causal)."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # [B, H, T, D]
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)  # [B, H, T, D]
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))
