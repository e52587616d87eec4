"""Mistral 7B (Jiang et al., 2023) on the transformer family: LLaMA's block with grouped-query attention
(8 key/value heads for 32 query heads) and sliding-window attention (window 4096, each position attending to
itself and the 4095 before it; HF ``MistralConfig.sliding_window``, ``masking_utils.sliding_window_overlay``).
"""

from __future__ import annotations

from dataclasses import dataclass

from parcae_runner.models.llama.model import LlamaHParams


@dataclass
class MistralHParams(LlamaHParams):
    name: str = "mistral"
    # Mistral 7B: 14336 = 3.5 x 4096
    mlp_ratio: float = 3.5
    sliding_window: int | None = 4096
    rope_base: float = 10000.0
