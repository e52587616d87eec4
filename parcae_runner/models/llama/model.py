"""LLaMA (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models") on the transformer family.

Pre-norm RMSNorm (eps 1e-6), rotary positions on every head dim (base 10,000), SwiGLU MLP of width
``2/3 * 4d`` rounded up to a multiple of 256, no biases, untied embedding and head (paper section 2.2;
HF ``LlamaConfig``: ``hidden_act="silu"``, ``attention_bias=False``, ``mlp_bias=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

from parcae_runner.models.transformer.config import TransformerHParams


@dataclass
class LlamaHParams(TransformerHParams):
    name: str = "llama"
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    position: str = "rope"
    mlp: str = "swiglu"
    mlp_ratio: float = 8 / 3
    mlp_multiple_of: int = 256
    tie_embeddings: bool = False
    bias: bool = False
