"""BLOOM (BigScience, 2022, "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model") on the family.

Pre-norm LayerNorm blocks with an extra LayerNorm right after the token embedding (for training stability,
paper section 3.2.3), ALiBi positions (Press et al., 2022) and no position embedding, tanh-GELU MLP 4x,
biases, tied embedding and head (HF ``BloomConfig``, ``BloomGelu``).
"""

from __future__ import annotations

from dataclasses import dataclass

from parcae_runner.models.transformer.config import TransformerHParams


@dataclass
class BloomHParams(TransformerHParams):
    name: str = "bloom"
    embed_norm: bool = True
    position: str = "alibi"
