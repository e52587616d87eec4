"""GPT-2 (Radford et al., 2019) and GPT-3 (Brown et al., 2020) on the transformer family.

Pre-norm LayerNorm blocks, learned absolute positions (1024), tanh-approximated GELU MLP 4x, biases
everywhere, tied token embedding and head, residual projections initialised at ``0.02 / sqrt(2 n_layers)``
(HF ``GPT2Config`` defaults: ``activation_function="gelu_new"``, ``layer_norm_epsilon=1e-5``, ``n_positions=1024``).
GPT-3 is the same block with a 2048 context (it also alternates dense and locally banded sparse attention,
which is not modelled here; train GPT-3 sizes with ``arch.max_positions=2048``).
"""

from __future__ import annotations

from dataclasses import dataclass

from parcae_runner.models.transformer.config import TransformerHParams


@dataclass
class GPT2HParams(TransformerHParams):
    name: str = "gpt2"
