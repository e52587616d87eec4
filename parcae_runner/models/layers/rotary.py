"""Rotary position embedding (RoPE), GPT-NeoX / HF convention.

The rotated part of each head is split in two halves ``[x1, x2]`` and rotated as
``[x1, x2] * cos + [-x2, x1] * sin`` (``rotate_half``), with the frequencies repeated over the
two halves, as in GPT-NeoX and HF ``apply_rotary_pos_emb``. With ``rotary_pct < 1`` only the
first ``int(head_dim * rotary_pct)`` dims of each head are rotated; the rest pass through.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``R = cos.shape[-1]`` dims of ``x``.

    x: ``[B, H, T, D]``; cos, sin: ``[T, R]`` float32 with ``R <= D``. Returns ``[B, H, T, D]`` in ``x.dtype``.
    """
    rot_dim = cos.shape[-1]
    # the rotation is done in float32: bf16 cos/sin lose the position resolution at large T
    x_rot = x[..., :rot_dim].float()
    x_rot = (x_rot * cos + rotate_half(x_rot) * sin).to(x.dtype)
    if rot_dim == x.shape[-1]:
        return x_rot
    return torch.cat((x_rot, x[..., rot_dim:]), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions ``0..T-1``, cached and grown on demand.

    The cache lives in non-persistent buffers (never in checkpoints) and starts empty, so the module
    has no maximum length and builds on the meta device; ``reset_cache`` empties it again (call it after
    ``to_empty``, whose buffers hold garbage).
    """

    # the cached tables, [T, dim] each (buffers, registered in __init__)
    cos: Tensor
    sin: Tensor

    def __init__(self, head_dim: int, rotary_pct: float = 1.0, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = int(head_dim * rotary_pct)
        if self.dim <= 0 or self.dim % 2:
            raise ValueError(
                f"rotary dims int(head_dim * rotary_pct) = int({head_dim} * {rotary_pct}) = {self.dim}; "
                "it must be a positive even number"
            )
        self.base = float(base)
        self.register_buffer("cos", torch.empty(0, self.dim), persistent=False)
        self.register_buffer("sin", torch.empty(0, self.dim), persistent=False)

    def reset_cache(self) -> None:
        device = self.cos.device
        self.cos = torch.empty(0, self.dim, device=device)
        self.sin = torch.empty(0, self.dim, device=device)

    @torch.no_grad()
    def _build(self, seq_len: int, device: torch.device) -> None:
        # same arithmetic as HF (float32 inv_freq, float32 positions) so exported models match closely
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim))
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # [T, R/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [T, R]
        self.cos, self.sin = emb.cos(), emb.sin()

    def forward(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Returns cos, sin: ``[T, R]`` float32 on ``device``."""
        # a model.to(bf16) casts buffers too; rebuild rather than rotate with bf16 tables
        stale = self.cos.device != torch.device(device) or self.cos.dtype != torch.float32
        if stale or self.cos.shape[0] < seq_len:
            self._build(seq_len, device)
        return self.cos[:seq_len], self.sin[:seq_len]
