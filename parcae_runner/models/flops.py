"""Training FLOPs per token: the convention used by `plan`, MFU and (by default) budgets.

Convention (Kaplan et al. 2020, as in Chinchilla and Pythia): a training token costs
``6 * N`` for the matrix multiplies (2 forward + 4 backward per weight), where N counts the
weights that multiply activations: every parameter except the input embedding (a lookup, no
FLOPs) plus the output head; attention adds ``6 * n_layers * seq_len * d_model`` for the score
and value products over the full context (no causal halving, as Kaplan). Norms, activations
and the softmax are left out: they are a few percent at any size worth planning.

An architecture with other costs (recurrent mixers, looped cores) defines
``flops_per_token(seq_len) -> float`` on its model; that method wins.

That is ``train.flops_convention=exact``. ``parcae`` is Parcae's ``scripts/cost.py`` (SandyResearch/parcae),
kept so that a FLOP budget buys the tokens it bought there (:func:`parcae_flops_per_token`):
``6 N_non-core + (2 R + 4 k) N_core + attention``, N every parameter but the token embedding (so the tied head is
left out and the value-embedding tables, lookups, count as compute), R and k the nominal ``mean_recurrence`` and
``mean_backprop_depth``.

Budgets (:func:`apply_budget`): ``train.max_tokens`` or ``train.max_flops`` (at most one) decides
``train.max_steps``; with neither, ``train.max_steps`` itself does. :func:`budget_source` says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.abilities import OwnFlopCount
from parcae_runner.models.registry import SizeSpec


def matmul_params(model: nn.Module) -> int:
    """Parameters that take part in a matmul per token: non-embedding weights plus the head."""
    head = getattr(model, "lm_head", None)
    head_params = sum(p.numel() for p in head.parameters()) if isinstance(head, nn.Module) else 0
    return count_parameters(model, non_embedding=True) + head_params


def training_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Forward + backward FLOPs for one training token at context ``seq_len``."""
    if isinstance(model, OwnFlopCount):
        return float(model.flops_per_token(seq_len))
    dims = getattr(model, "dims", {})
    attention = 6 * dims["n_layers"] * seq_len * dims["d_model"] if "n_heads" in dims else 0
    return 6.0 * matmul_params(model) + attention


def parcae_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token in Parcae's ``scripts/cost.py`` convention.

    ``6 N_non-core + (2 R + 4 k) N_core + attention``: N counts every parameter except the token embedding
    (``embed``; a tied head is that same matrix, so it is left out, while an untied head counts), value-embedding
    tables included; ``N_core`` the looped blocks (``model.core``), R and k the nominal ``mean_recurrence`` and
    ``mean_backprop_depth`` (a model without a loop: ``6 N + attention``). Attention: each layer counts as
    ``2 * seq_len * d_model`` more weights, with its layer's factor (6 outside the loop, ``2R + 4k`` in it), i.e.
    nanochat's ``12 * n_layers * d * seq_len`` with looped layers weighted as their weights are. That term is
    assumed (``cost.py``'s own is not in the notes we had); it reproduces the 1.36 GFLOP per token Parcae's
    140M at R = 8, k = 4, sequence 2,048 costs by its formula.
    """
    params = {id(p): p for p in model.parameters()}
    embed = getattr(model, "embed", None)
    for p in embed.parameters() if isinstance(embed, nn.Module) else ():
        params.pop(id(p), None)
    dims = getattr(model, "dims", {})
    d = dims["d_model"]
    core = getattr(model, "core", None)
    hp: Any = getattr(model, "hparams", None)
    if isinstance(core, nn.Module) and hasattr(hp, "mean_recurrence"):
        core_ids = {id(p) for p in core.parameters()}
        n_core = sum(params[i].numel() for i in core_ids if i in params)
        n_rest = sum(p.numel() for i, p in params.items() if i not in core_ids)
        loop = 2 * hp.mean_recurrence + 4 * hp.mean_backprop_depth
        layers_rest = dims["n_prelude"] + dims["n_coda"]
        attention = (6 * layers_rest + loop * dims["n_core"]) * 2 * seq_len * d
        return float(6 * n_rest + loop * n_core + attention)
    return float(6 * sum(p.numel() for p in params.values()) + 12 * dims["n_layers"] * seq_len * d)


# train.flops_convention -> the training FLOPs per token of a model at a context length
FLOPS_CONVENTIONS: dict[str, Callable[[nn.Module, int], float]] = {
    "exact": training_flops_per_token,
    "parcae": parcae_flops_per_token,
}


def flops_per_token_in(model: nn.Module, seq_len: int, convention: str = "exact") -> float:
    """Training FLOPs per token in ``convention`` (``exact``: :func:`training_flops_per_token`; ``parcae``)."""
    if convention not in FLOPS_CONVENTIONS:
        raise ValueError(f"train.flops_convention={convention!r} is not one of: {', '.join(FLOPS_CONVENTIONS)}")
    return FLOPS_CONVENTIONS[convention](model, seq_len)


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
def _costs(arch_json: str, size_json: str, vocab: int, seq_len: int, convention: str) -> tuple[int, int, float]:
    with torch.device("meta"), skip_meta_init():
        model = build_model(json.loads(arch_json), json.loads(size_json), vocab)
    return (
        count_parameters(model),
        count_parameters(model, non_embedding=True),
        flops_per_token_in(model, seq_len, convention),
    )


def arch_costs(
    arch_cfg: Mapping[str, Any], size: SizeSpec, vocab: int, seq_len: int, convention: str = "exact"
) -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token in ``convention``), from a meta-device
    build cached per distinct architecture config (hyperparameters such as a looped model's mean
    recurrence change the cost, so the whole config is the key) and size (a name, or a size config with the
    dims it overrides)."""
    size_json = json.dumps(size if isinstance(size, str) else dict(size), sort_keys=True)
    return _costs(json.dumps(dict(arch_cfg), sort_keys=True), size_json, int(vocab), int(seq_len), convention)


def planning_vocab_size(cfg: DictConfig) -> int:
    """The model vocabulary a config asks for: ``data.vocab_size`` rounded up to ``data.pad_vocab_multiple`` (the
    prepared data's real figure can be a little smaller for a small corpus)."""
    vocab = cfg.data.vocab_size
    if vocab is None:
        raise ValueError("data.vocab_size is null: the model's vocabulary is known once the tokenizer is loaded")
    multiple = int(cfg.data.get("pad_vocab_multiple") or 1)
    return -(-int(vocab) // multiple) * multiple


def flops_convention(cfg: DictConfig) -> str:
    return str(cfg.train.get("flops_convention") or "exact")


def model_costs(cfg: DictConfig, vocab_size: int | None = None, convention: str = "exact") -> tuple[int, int, float]:
    """(parameters, non-embedding parameters, training FLOPs per token in ``convention``) of a run config's
    model, built once per distinct architecture config on the meta device, at ``vocab_size`` (default: the
    config's :func:`planning_vocab_size`)."""
    vocab = vocab_size if vocab_size is not None else planning_vocab_size(cfg)
    # cfg.arch and cfg.size are config nodes, so their containers are dicts
    arch = cast("dict[str, Any]", OmegaConf.to_container(cfg.arch, resolve=True))
    size = cast("dict[str, Any]", OmegaConf.to_container(cfg.size, resolve=True))
    return arch_costs(arch, size, vocab, cfg.data.seq_len, convention)


def apply_budget(cfg: DictConfig) -> None:
    """``train.max_tokens`` or ``train.max_flops`` set: derive ``train.max_steps`` from it (rounded, at least one
    step); the caller has checked that at most one is set."""
    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    if cfg.train.get("max_tokens") is not None:
        cfg.train.max_steps = max(1, round(cfg.train.max_tokens / tokens_per_step))
    elif cfg.train.get("max_flops") is not None:
        fpt = model_costs(cfg, convention=flops_convention(cfg))[2]
        cfg.train.max_steps = max(1, round(cfg.train.max_flops / (fpt * tokens_per_step)))


def budget_source(cfg: DictConfig) -> str:
    """One line: which budget decides ``train.max_steps``, and in which FLOP convention."""
    steps = cfg.train.max_steps
    if cfg.train.get("max_tokens") is not None:
        return f"budget: train.max_tokens={cfg.train.max_tokens:.4g} decides train.max_steps={steps}"
    if cfg.train.get("max_flops") is not None:
        return (
            f"budget: train.max_flops={cfg.train.max_flops:.4g} ({flops_convention(cfg)} FLOP convention) "
            f"decides train.max_steps={steps}"
        )
    return f"budget: train.max_steps={steps}"
