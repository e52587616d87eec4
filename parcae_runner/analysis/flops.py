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

from functools import cache

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from parcae_runner.models import build_model, count_parameters


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


@cache
def _model_costs(arch_yaml: str, size: str, vocab: int, seq_len: int) -> tuple[int, int, float]:
    with torch.device("meta"):
        model = build_model(OmegaConf.create(arch_yaml), size, vocab)
    return (
        count_parameters(model),
        count_parameters(model, non_embedding=True),
        training_flops_per_token(model, seq_len),
    )


def model_costs(cfg: DictConfig) -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token) of a run config's model,
    built once per distinct architecture config on the meta device. The vocabulary is the one asked
    for (a small corpus can give slightly fewer tokens)."""
    return _model_costs(OmegaConf.to_yaml(cfg.arch), cfg.size.name, cfg.data.vocab_size, cfg.data.seq_len)


def apply_flop_budget(cfg: DictConfig) -> None:
    """``train.max_flops`` set: derive ``train.max_steps`` from it (at least one step)."""
    if cfg.train.get("max_flops") is None:
        return
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    cfg.train.max_steps = max(1, round(cfg.train.max_flops / (model_costs(cfg)[2] * tokens_per_step)))
