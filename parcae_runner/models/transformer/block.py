"""One transformer block assembled from config: norm kind and position, MLP kind, serial or parallel residual."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.transformer.attention import Attention
from parcae_runner.models.transformer.config import TransformerHParams, mlp_hidden


def make_norm(hp: TransformerHParams, d_model: int) -> nn.Module:
    """LayerNorm (with bias iff ``hp.bias``) or RMSNorm (LLaMA; Zhang & Sennrich, 2019)."""
    if hp.norm == "rmsnorm":
        return nn.RMSNorm(d_model, eps=hp.norm_eps)
    return nn.LayerNorm(d_model, eps=hp.norm_eps, bias=hp.bias)


class FeedForward(nn.Module):
    """``[B, T, C] -> [B, T, C]``: ``down(act(up(x)))``, or SwiGLU ``down(silu(gate(x)) * up(x))``
    (Shazeer, 2020, as in LLaMA). gelu = exact erf; gelu_tanh = GPT-2's / BLOOM's tanh approximation;
    relu2 = squared ReLU (So et al., 2021, Primer)."""

    def __init__(self, hp: TransformerHParams, d_model: int) -> None:
        super().__init__()
        hidden = mlp_hidden(hp, d_model)
        self.kind = hp.mlp
        self.gate = nn.Linear(d_model, hidden, bias=hp.bias) if hp.mlp == "swiglu" else None
        self.up = nn.Linear(d_model, hidden, bias=hp.bias)
        self.down = nn.Linear(hidden, d_model, bias=hp.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(x)  # [B, T, hidden]
        if self.gate is not None:
            h = F.silu(self.gate(x)) * h
        elif self.kind == "gelu":
            h = F.gelu(h)
        elif self.kind == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h).square()
        return self.down(h)


class Block(nn.Module):
    """pre-norm serial (GPT-2, LLaMA): ``x + attn(ln1 x)`` then ``+ mlp(ln2 x)``; pre-norm parallel (GPT-J,
    GPT-NeoX, PaLM): ``x + attn(ln1 x) + mlp(ln2 x)``; post-norm serial (Vaswani et al.):
    ``ln1(x + attn x)`` then ``ln2(x + mlp x)``."""

    def __init__(
        self, hp: TransformerHParams, d_model: int, n_heads: int, n_kv_heads: int, attn_scale: float | None = None
    ) -> None:
        super().__init__()
        self.parallel, self.post = hp.residual == "parallel", hp.norm_position == "post"
        self.ln1 = make_norm(hp, d_model)
        self.attn = Attention(d_model, n_heads, n_kv_heads, hp.bias, attn_scale)
        self.ln2 = make_norm(hp, d_model)
        self.mlp = FeedForward(hp, d_model)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, bias: Tensor | None) -> Tensor:
        """x: ``[B, T, C]`` -> ``[B, T, C]``."""
        if self.post:
            x = self.ln1(x + self.attn(x, rope, bias))
            return self.ln2(x + self.mlp(x))
        if self.parallel:
            return x + self.attn(self.ln1(x), rope, bias) + self.mlp(self.ln2(x))
        x = x + self.attn(self.ln1(x), rope, bias)
        return x + self.mlp(self.ln2(x))
