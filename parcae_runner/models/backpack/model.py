"""Backpack language model (Hewitt, Thickstun, Manning, Liang, ACL 2023, "Backpack Language Models").

Each token ``x`` carries ``k`` sense vectors ``C(x) in R^{k x d}``, computed from its embedding alone (no
context); a GPT-2 body reads the sequence and produces, per sense ``l``, causal weights ``alpha_l``; the output
is a weighted sum of senses, projected by the tied embedding:

    C(x_j)   = FF(NoMix(LN(E x_j)))  reshaped to [k, d]          (sense network)
    alpha_l  = softmax(q_l k_l^T / sqrt(d/k) + causal mask)       (q, k from the body's last hidden state)
    o_i      = sum_l sum_j alpha_{l,i,j} C(x_j)_l / k             (division by k as in Levanter)
    logits_i = E o_i                                              (tied head, no final norm)

Module layout and names follow the HF remote code of ``stanfordnlp/backpack-gpt2`` and Levanter's
``src/levanter/models/backpack.py``: ``BackpackSenseNetwork`` (``ln``, a ``BackpackNoMixBlock`` and a final
``d -> s*d -> k*d`` MLP), ``BackpackWeightNetwork`` (``c_attn: d -> 2d``), a GPT-2 body whose attention also
divides scores by the layer number (``scale_attn_by_inverse_layer_idx``, on in the HF backpack config).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_embedding, init_linear, init_norm
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.transformer.block import Block
from parcae_runner.models.transformer.config import TransformerHParams


@dataclass
class BackpackHParams:
    name: str = "backpack"
    # the GPT-2 body's learned positions (HF backpack-gpt2 and the Levanter card: n_positions 512)
    max_positions: int = 512
    norm_eps: float = 1e-5
    scale_attn_by_inverse_layer_idx: bool = True
    init_std: float = 0.02
    # the head is the token embedding (the Backpack's sense-to-vocabulary map); kept for the common frame
    tie_embeddings: bool = True


def body_hparams(hp: BackpackHParams) -> TransformerHParams:
    """The GPT-2 body's block settings (pre-norm LayerNorm, tanh-GELU 4x, biases)."""
    return TransformerHParams(name="backpack", norm_eps=hp.norm_eps, max_positions=hp.max_positions)


class GeluMLP(nn.Module):
    """``[..., d_in] -> [..., d_out]``: ``down(gelu_tanh(up(x)))`` (GPT-2's MLP, HF ``BackpackMLP``)."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_in, hidden)
        self.down = nn.Linear(hidden, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class SenseNetwork(nn.Module):
    """Token embeddings ``[B, T, d]`` -> sense vectors ``[B, k, T, d]`` (no mixing across positions)."""

    def __init__(self, d_model: int, n_senses: int, scale: int, eps: float) -> None:
        super().__init__()
        self.n_senses = n_senses
        self.ln = nn.LayerNorm(d_model, eps=eps)
        # BackpackNoMixBlock: a transformer block without attention, its residual stream seeded with E x
        self.ln1 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = GeluMLP(d_model, 4 * d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=eps)
        self.final = GeluMLP(d_model, scale * d_model, n_senses * d_model)

    def forward(self, emb: Tensor) -> Tensor:
        B, T, d = emb.shape
        residual = self.ln(emb) + emb  # [B, T, d]
        residual = residual + self.mlp(self.ln1(residual))
        senses = self.final(self.ln2(residual))  # [B, T, k*d]
        return senses.view(B, T, self.n_senses, d).transpose(1, 2)  # [B, k, T, d]


class WeightNetwork(nn.Module):
    """Body hidden states ``[B, T, d]`` -> contextualisation weights ``alpha [B, k, T, T]`` (causal, rows sum to 1)."""

    def __init__(self, d_model: int, n_senses: int) -> None:
        super().__init__()
        self.n_senses = n_senses
        # floor(d / k) dims per sense (HF BackpackWeightNetwork.embed_per_sense: the card's 1280 / 48 senses -> 26)
        self.per_sense = d_model // n_senses
        self.c_attn = nn.Linear(d_model, 2 * n_senses * self.per_sense)

    def forward(self, h: Tensor) -> Tensor:
        B, T, _ = h.shape
        qk = self.c_attn(h).view(B, T, 2, self.n_senses, self.per_sense)  # [B, T, 2, k, d/k]
        q, k = qk.unbind(dim=2)  # [B, T, k, d/k] each
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(self.per_sense)  # [B, k, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)


class BackpackModel(LanguageModel):
    """``input_ids [B, T] -> logits [B, T, V]``; dims ``{n_layers, d_model, n_heads, n_senses, sense_scale}``."""

    def __init__(self, hparams: BackpackHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__(hparams, dims, vocab_size)
        d, n_heads, n_layers, k = dims["d_model"], dims["n_heads"], dims["n_layers"], dims["n_senses"]
        if d % n_heads or not 1 <= k <= d:
            raise ValueError(f"size {dict(dims)}: d_model must be a multiple of n_heads and at least n_senses")
        body = body_hparams(hparams)
        self.pos_embed = nn.Embedding(hparams.max_positions, d)
        head_scale = 1.0 / math.sqrt(d // n_heads)
        self.blocks = nn.ModuleList(
            Block(body, d, n_heads, n_heads, head_scale / (i + 1) if hparams.scale_attn_by_inverse_layer_idx else None)
            for i in range(n_layers)
        )
        self.norm = nn.LayerNorm(d, eps=hparams.norm_eps)
        self.sense = SenseNetwork(d, k, dims["sense_scale"], hparams.norm_eps)
        self.weight = WeightNetwork(d, k)
        self.finish_init()

    @property
    def tied(self) -> bool:
        return True

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02), residual outputs N(0, 0.02 / sqrt(2 n_layers)), unit norms, zero biases."""
        self.tie_head()
        std = self.hparams.init_std
        out_std = std / math.sqrt(2 * self.dims["n_layers"])
        init_embedding(self.embed, std)
        init_embedding(self.pos_embed, std)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                init_norm(module)
            elif isinstance(module, nn.Linear) and module is not self.lm_head:
                init_linear(module, std)
        for block in cast(Iterable[Block], self.blocks):
            init_linear(block.attn.o, out_std)
            init_linear(block.mlp.down, out_std)

    def sense_vectors(self, input_ids: Tensor) -> Tensor:
        """input_ids ``[B, T]`` -> each token's senses ``[B, k, T, d]`` (context-free)."""
        return self.sense(self.embed(input_ids))

    def contextualization(self, input_ids: Tensor) -> Tensor:
        """input_ids ``[B, T]`` -> ``alpha [B, k, T, T]`` from the GPT-2 body."""
        T = input_ids.shape[1]
        h = self.embed(input_ids) + self.pos_embed(torch.arange(T, device=input_ids.device))  # [B, T, d]
        for block in self.blocks:
            h = block(h, None, None)
        return self.weight(self.norm(h))

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        senses = self.sense_vectors(input_ids)  # [B, k, T, d]
        alpha = self.contextualization(input_ids)  # [B, k, T, T]
        o = (alpha @ senses).sum(dim=1) / self.dims["n_senses"]  # [B, T, d]
        return self.lm_head(o)  # [B, T, V]
