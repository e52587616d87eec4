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

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

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


def skip_meta_init() -> Any:
    """A torch function mode under which in-place ops on meta tensors (``normal_``, ``uniform_``,
    ``zero_``, the ``nn.init`` functions) return their tensor untouched.

    Why: a meta tensor holds no values, so initialising it does nothing, but torch routes
    ``normal_`` on meta through ``torch._refs``, whose first call imports ``torch._dynamo``
    (3-4 s on a 2-core machine): more than planning a sweep or collecting a thousand runs takes.
    """
    from torch.overrides import TorchFunctionMode

    class SkipMetaInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            # nn.init functions pass their tensor as a keyword to handle_torch_function
            target = args[0] if args else kwargs.get("tensor")
            if name.endswith("_") and not name.startswith("_") and isinstance(target, torch.Tensor) and target.is_meta:
                return target
            return func(*args, **kwargs)

    return SkipMetaInit()


@cache
def _costs(arch_json: str, size: str, vocab: int, seq_len: int) -> tuple[int, int, float]:
    with torch.device("meta"), skip_meta_init():
        model = build_model(json.loads(arch_json), size, vocab)
    return (
        count_parameters(model),
        count_parameters(model, non_embedding=True),
        float(training_flops_per_token(model, seq_len)),
    )


def arch_costs(arch_cfg: Mapping[str, Any], size: str, vocab: int, seq_len: int) -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token), from a meta-device build
    cached per distinct architecture config (hyperparameters such as a looped model's mean
    recurrence change the cost, so the whole config is the key)."""
    return _costs(json.dumps(dict(arch_cfg), sort_keys=True), size, int(vocab), int(seq_len))


def planning_vocab_size(cfg: DictConfig) -> int:
    """The model vocabulary a config asks for: ``data.vocab_size`` rounded up to ``data.pad_vocab_multiple`` (the
    prepared data's real figure can be a little smaller for a small corpus)."""
    vocab = cfg.data.vocab_size
    if vocab is None:
        raise ValueError("data.vocab_size is null: the model's vocabulary is known once the tokenizer is loaded")
    multiple = int(cfg.data.get("pad_vocab_multiple") or 1)
    return -(-int(vocab) // multiple) * multiple


def model_costs(cfg: DictConfig, vocab_size: int | None = None) -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token) of a run config's model,
    built once per distinct architecture config on the meta device, at ``vocab_size`` (default: the
    config's :func:`planning_vocab_size`)."""
    vocab = vocab_size if vocab_size is not None else planning_vocab_size(cfg)
    return arch_costs(OmegaConf.to_container(cfg.arch, resolve=True), cfg.size.name, vocab, cfg.data.seq_len)


def apply_flop_budget(cfg: DictConfig) -> None:
    """``train.max_flops`` set: derive ``train.max_steps`` from it (at least one step)."""
    if cfg.train.get("max_flops") is None:
        return
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    cfg.train.max_steps = max(1, round(cfg.train.max_flops / (model_costs(cfg)[2] * tokens_per_step)))
