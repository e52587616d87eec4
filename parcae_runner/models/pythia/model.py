"""Pythia (Biderman et al., 2023): the GPT-NeoX decoder.

Per block, a parallel residual ``x = x + Attn(LN1(x)) + MLP(LN2(x))``; rotary embeddings on the
first quarter of each head; exact-erf GELU MLP; untied input embedding and output head.
Parameter names differ from HF ``GPTNeoXForCausalLM`` but the tensors map one to one by renaming
(see ``parcae_runner.models.pythia.hf``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_embedding, init_linear, init_norm, small_init_std, wang_init_std
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.layers.mlp import MLP
from parcae_runner.models.layers.rotary import RotaryEmbedding
from parcae_runner.models.transformer.attention import FusedAttention


@dataclass
class PythiaHParams:
    name: str = "pythia"
    # fraction of each head's dims that get rotary embeddings
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    norm_eps: float = 1e-5
    # MLP hidden width = mlp_ratio * d_model
    mlp_ratio: int = 4
    # pythia: small_init everywhere, wang_init on the residual output projections (init_std unused);
    # normal: N(0, init_std) everywhere, as HF GPTNeoX's _init_weights
    init: str = "pythia"
    init_std: float = 0.02
    tie_embeddings: bool = False


INITS = ("pythia", "normal")


class PythiaBlock(nn.Module):
    def __init__(self, hp: PythiaHParams, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.attn = FusedAttention(d_model, n_heads, bias=True)
        self.ln2 = nn.LayerNorm(d_model, eps=hp.norm_eps)
        self.mlp = MLP(d_model, hp.mlp_ratio * d_model, bias=True, activation=F.gelu)  # exact (erf) GELU

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x: ``[B, T, C]`` -> ``[B, T, C]``."""
        # parallel residual: both branches read the same x
        return x + self.attn(self.ln1(x), (cos, sin), None) + self.mlp(self.ln2(x))


class PythiaModel(LanguageModel):
    """Decoder-only LM: ``input_ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, hparams: PythiaHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        if hparams.init not in INITS:
            raise ValueError(f"arch.init={hparams.init!r} is not one of: {', '.join(INITS)}")
        super().__init__(hparams, dims, vocab_size)
        d_model, n_heads, n_layers = dims["d_model"], dims["n_heads"], dims["n_layers"]
        self.rotary = RotaryEmbedding(d_model // n_heads, rotary_pct=hparams.rotary_pct, base=hparams.rotary_base)
        self.blocks = nn.ModuleList(PythiaBlock(hparams, d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model, eps=hparams.norm_eps)
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        d_model, n_layers = self.dims["d_model"], self.dims["n_layers"]
        if self.hparams.init == "pythia":
            std, out_std = small_init_std(d_model), wang_init_std(d_model, n_layers)
        else:
            std = out_std = self.hparams.init_std
        init_embedding(self.embed, std)
        for block in cast(Iterable[PythiaBlock], self.blocks):
            init_norm(block.ln1)
            init_norm(block.ln2)
            init_linear(block.attn.qkv, std)
            init_linear(block.attn.proj, out_std)
            init_linear(block.mlp.up, std)
            init_linear(block.mlp.down, out_std)
        init_norm(self.norm)
        if not self.hparams.tie_embeddings:
            init_linear(self.lm_head, std)
        self.rotary.reset_cache()

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        x = self.embed(input_ids)  # [B, T, C]
        cos, sin = self.rotary(input_ids.shape[1], x.device)  # [T, R] each
        for block in self.blocks:
            x = block(x, cos, sin)  # [B, T, C]
        return self.lm_head(self.norm(x))  # [B, T, V]
