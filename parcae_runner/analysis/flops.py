"""Training FLOPs per token: the one convention used by `plan`, budgets and MFU.

Convention (Kaplan et al. 2020, as in Chinchilla and Pythia): a training token costs
``6 * N`` for the matrix multiplies (2 forward + 4 backward per weight), where N counts the
weights that multiply activations: every parameter except the input embedding (a lookup, no
FLOPs) plus the output head; attention adds ``6 * n_layers * seq_len * d_model`` for the score
and value products over the full context (no causal halving, as Kaplan). Norms, activations
and the softmax are left out: they are a few percent at any size worth planning.

An architecture with other costs (recurrent mixers, looped cores) defines
``flops_per_token(seq_len) -> float`` on its model; that method wins.
"""

from __future__ import annotations

from torch import nn

from parcae_runner.models import count_parameters


def matmul_params(model: nn.Module) -> int:
    """Parameters that take part in a matmul per token: non-embedding weights plus the head."""
    head = getattr(model, "lm_head", None)
    head_params = sum(p.numel() for p in head.parameters()) if isinstance(head, nn.Module) else 0
    return count_parameters(model, non_embedding=True) + head_params


def training_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Forward + backward FLOPs for one training token at context ``seq_len``."""
    if hasattr(model, "flops_per_token"):
        return float(model.flops_per_token(seq_len))
    dims = getattr(model, "dims", {})
    attention = 6 * dims["n_layers"] * seq_len * dims["d_model"] if "n_heads" in dims else 0
    return 6.0 * matmul_params(model) + attention
