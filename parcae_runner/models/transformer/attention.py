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
    """``[B, T, C] -> [B, T, C]`` with separate q, k, v and output projections (HF LLaMA's layout).

    The one causal attention of the package: :class:`FusedAttention` (GPT-NeoX's fused layout, Pythia) and the
    QK-norm attention of Parcae (``layers/qk_norm_block.py``) change only how q, k, v are projected (:meth:`heads`)
    and how the heads are projected back (:meth:`out`); rotary, GQA and the masked SDPA are :meth:`attend`.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, bias: bool, scale: float | None = None) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        # score scale (None: 1/sqrt(head_dim)); the Backpack's GPT-2 body also divides by the layer number
        self.scale = scale
        self.head_dim = d_model // n_heads
        self.build_projections(d_model, bias)

    def build_projections(self, d_model: int, bias: bool) -> None:
        self.q = nn.Linear(d_model, self.n_heads * self.head_dim, bias=bias)
        self.k = nn.Linear(d_model, self.n_kv_heads * self.head_dim, bias=bias)
        self.v = nn.Linear(d_model, self.n_kv_heads * self.head_dim, bias=bias)
        self.o = nn.Linear(self.n_heads * self.head_dim, d_model, bias=bias)

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x ``[B, T, C]`` -> q ``[B, H, T, D]``, k and v ``[B, Hkv, T, D]``."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        return q, k, v

    def out(self, y: Tensor) -> Tensor:
        """The heads ``[B, T, H * D]`` -> ``[B, T, C]``."""
        return self.o(y)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, rope: tuple[Tensor, Tensor] | None, bias: Tensor | None
    ) -> Tensor:
        """q ``[B, H, T, D]``, k, v ``[B, Hkv, T, D]`` -> the heads side by side ``[B, T, H * D]``."""
        B, _, T, _ = q.shape
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # [B, H, T, D]
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)  # [B, H, T, D]
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return y.transpose(1, 2).reshape(B, T, -1)  # [B, T, H * D]

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, bias: Tensor | None) -> Tensor:
        """x: ``[B, T, C]``; rope: cos, sin ``[T, R]`` or None; bias: ``[H or 1, T, T]`` or None (causal)."""
        return self.out(self.attend(*self.heads(x), rope, bias))


class FusedAttention(Attention):
    """Multi-head attention with one ``qkv`` projection laid out per head, ``[q_h, k_h, v_h]`` for ``h = 0..H-1``
    (GPT-NeoX's ``query_key_value``, so its weight maps to HF GPT-NeoX without reshuffling), and ``proj`` out."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True) -> None:
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        super().__init__(d_model, n_heads, n_heads, bias)

    def build_projections(self, d_model: int, bias: bool) -> None:
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x ``[B, T, C]`` -> q, k, v ``[B, H, T, D]`` each."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, self.n_heads, 3 * self.head_dim).transpose(1, 2)  # [B, H, T, 3D]
        q, k, v = qkv.chunk(3, dim=-1)
        return q, k, v

    def out(self, y: Tensor) -> Tensor:
        return self.proj(y)
