"""The QK-norm blocks of Parcae and its baseline (nanochat lineage), for the shipped modeling files; torch only.

Pre-norm RMSNorm; fused per-head QKV with RMSNorm on q and k, full RoPE (rotate-half), causal SDPA; ReLU^2 MLP;
no biases; an optional value embedding added to v, gated per head by ``2 sigmoid(W_g x[:32])``.
"""

import torch
import torch.nn.functional as F
from torch import nn

VE_GATE_CHANNELS = 32


def rope(t: int, dim: int, base: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    freqs = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return (x.float() * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int, eps: float, value_embedding: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.ve_gate = nn.Linear(min(VE_GATE_CHANNELS, d), n_heads, bias=False) if value_embedding else None

    def forward(self, x, cos, sin, ve):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, self.n_heads, 3 * self.head_dim).chunk(3, dim=-1)  # [B, T, H, D]
        if self.ve_gate is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.ve_gate.in_features]))  # [B, T, H]
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_heads, self.head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(d, hidden, bias=False), nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.relu(self.up(x)).square())


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, eps: float, mlp_ratio: int, value_embedding: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d, eps=eps), nn.RMSNorm(d, eps=eps)
        self.attn, self.mlp = Attention(d, n_heads, eps, value_embedding), MLP(d, mlp_ratio * d)

    def forward(self, x, cos, sin, ve):
        x = x + self.attn(self.norm1(x), cos, sin, ve)
        return x + self.mlp(self.norm2(x))


def has_value_embedding(layer: int, n_layers: int) -> bool:
    """Alternate layers, always including the last (nanochat's has_ve)."""
    return layer % 2 == (n_layers - 1) % 2
