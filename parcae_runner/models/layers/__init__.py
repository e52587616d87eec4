"""Building blocks shared by the architectures (the one attention is ``models/transformer/attention.py``)."""

from parcae_runner.models.layers.mlp import MLP
from parcae_runner.models.layers.rotary import RotaryEmbedding, apply_rotary, rotate_half

__all__ = ["MLP", "RotaryEmbedding", "apply_rotary", "rotate_half"]
