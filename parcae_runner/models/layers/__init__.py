"""Building blocks shared by the architectures."""

from parcae_runner.models.layers.attention import CausalSelfAttention
from parcae_runner.models.layers.mlp import MLP
from parcae_runner.models.layers.rotary import RotaryEmbedding, apply_rotary, rotate_half

__all__ = ["MLP", "CausalSelfAttention", "RotaryEmbedding", "apply_rotary", "rotate_half"]
