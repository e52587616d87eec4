"""Parcae's non-looped GPT baseline: the `gpt` architecture (model and sizes; no Hugging Face export)."""

from parcae_runner.models.gpt.model import GPTHParams, GPTModel
from parcae_runner.models.gpt.sizes import SIZES
from parcae_runner.models.registry import Architecture, register

DESCRIPTION = "Parcae's GPT baseline: pre-norm RMSNorm, QK-norm, RoPE, ReLU^2 MLP, value embeddings, tied"

ARCH = register(Architecture("gpt", GPTHParams, SIZES, GPTModel, DESCRIPTION))
