"""The configurable decoder-only transformer: ``input_ids [B, T] -> logits [B, T, V]``.

``embed (+ learned positions) (-> embed norm) -> n_layers x Block -> final norm (pre-norm only) -> head``.
Which norm, positions, MLP, residual, attention heads and window: :class:`TransformerHParams`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import cast

import torch
from torch import Tensor, nn

from parcae_runner.models.layers.init import init_embedding, init_linear, init_norm
from parcae_runner.models.layers.lm import LanguageModel
from parcae_runner.models.layers.rotary import RotaryEmbedding
from parcae_runner.models.transformer.attention import alibi_slopes, attention_bias
from parcae_runner.models.transformer.block import Block, make_norm
from parcae_runner.models.transformer.config import TransformerHParams, kv_heads, raise_on_errors


class TransformerModel(LanguageModel):
    """Decoder-only LM built from ``TransformerHParams`` (any subclass) and dims
    ``{n_layers, d_model, n_heads[, n_kv_heads]}``."""

    def __init__(self, hparams: TransformerHParams, dims: Mapping[str, int], vocab_size: int) -> None:
        raise_on_errors(hparams, dims)
        super().__init__(hparams, dims, vocab_size)
        d_model, n_heads, n_layers = dims["d_model"], dims["n_heads"], dims["n_layers"]
        hp = hparams
        self.pos_embed = nn.Embedding(hp.max_positions, d_model) if hp.position == "learned" else None
        self.embed_norm = make_norm(hp, d_model) if hp.embed_norm else None
        self.rotary = (
            RotaryEmbedding(d_model // n_heads, rotary_pct=hp.rotary_fraction, base=hp.rope_base)
            if hp.position == "rope"
            else None
        )
        self.blocks = nn.ModuleList(Block(hp, d_model, n_heads, kv_heads(hp, dims)) for _ in range(n_layers))
        # post-norm blocks end in a norm already
        self.norm = make_norm(hp, d_model) if hp.norm_position == "pre" else None
        self.finish_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        """N(0, init_std) weights, zero biases, unit norms; the residual outputs (attention ``o``, MLP ``down``)
        scaled by ``1/sqrt(2 n_layers)`` (GPT-2 paper, section 2.3)."""
        self.tie_head()
        std = self.hparams.init_std
        out_std = std / math.sqrt(2 * self.dims["n_layers"])
        init_embedding(self.embed, std)
        if self.pos_embed is not None:
            init_embedding(self.pos_embed, std)
        for module in (self.embed_norm, self.norm):
            if module is not None:
                init_norm(module)
        for block in cast(Iterable[Block], self.blocks):
            init_norm(block.ln1)
            init_norm(block.ln2)
            for linear in (block.attn.q, block.attn.k, block.attn.v, block.mlp.up, block.mlp.gate):
                if linear is not None:
                    init_linear(linear, std)
            init_linear(block.attn.o, out_std)
            init_linear(block.mlp.down, out_std)
        if not self.tied:
            init_linear(self.lm_head, std)
        if self.rotary is not None:
            self.rotary.reset_cache()

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids: ``[B, T]`` int64 -> logits ``[B, T, V]``."""
        T = input_ids.shape[1]
        x = self.embed(input_ids)  # [B, T, C]
        if self.pos_embed is not None:
            x = x + self.pos_embed(torch.arange(T, device=x.device))  # [B, T, C]
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        rope = self.rotary(T, x.device) if self.rotary is not None else None  # cos, sin [T, R]
        slopes = alibi_slopes(self.dims["n_heads"]) if self.hparams.position == "alibi" else None
        bias = attention_bias(T, x.device, slopes, self.hparams.sliding_window)  # [H or 1, T, T] or None
        for block in self.blocks:
            x = block(x, rope, bias)  # [B, T, C]
        if self.norm is not None:
            x = self.norm(x)
        return self.lm_head(x)  # [B, T, V]
