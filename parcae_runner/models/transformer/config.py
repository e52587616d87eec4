"""The hyperparameters of the configurable transformer family and their checks.

Every named architecture on the family (``gpt2``, ``llama``, ``mistral``, ``bloom``) subclasses
``TransformerHParams`` with its paper's defaults; any field can be overridden from the command line
(``arch.position=alibi``, ``arch.n_kv_heads=1``, ``arch.sliding_window=256``, ...), so one family covers
GPT-2/3, GPT-NeoX-style parallel blocks, LLaMA, BLOOM, Mistral and PaLM-style multi-query attention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NORMS = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
POSITIONS = ("learned", "rope", "alibi", "none")
MLPS = ("gelu", "gelu_tanh", "swiglu", "relu2")
RESIDUALS = ("serial", "parallel")


@dataclass
class TransformerHParams:
    name: str = "transformer"
    norm: str = "layernorm"
    # pre: x + f(norm(x)) (GPT-2 onwards); post: norm(x + f(x)) (the original Transformer)
    norm_position: str = "pre"
    norm_eps: float = 1e-5
    # a norm right after the token embedding (BLOOM's word_embeddings_layernorm)
    embed_norm: bool = False
    position: str = "learned"
    # learned positions: the table's length (GPT-2: n_positions 1024)
    max_positions: int = 1024
    # rope: the fraction of each head's dims that rotate, and the base
    rotary_fraction: float = 1.0
    rope_base: float = 10000.0
    mlp: str = "gelu_tanh"
    # MLP hidden width = mlp_ratio * d_model, rounded up to a multiple of mlp_multiple_of (LLaMA: 8/3, 256)
    mlp_ratio: float = 4.0
    mlp_multiple_of: int = 1
    residual: str = "serial"
    # key/value heads (None: the size's, else n_heads): n_heads = MHA, fewer = GQA, 1 = MQA
    n_kv_heads: int | None = None
    # each position attends to itself and the sliding_window - 1 before it (None: the whole prefix)
    sliding_window: int | None = None
    tie_embeddings: bool = True
    bias: bool = True
    init_std: float = 0.02


def mlp_hidden(hp: TransformerHParams, d_model: int) -> int:
    """The MLP's hidden width: ``mlp_ratio * d_model`` rounded up to ``mlp_multiple_of``."""
    # the epsilon keeps a ratio read back from an HF config (intermediate / d) from rounding down
    hidden = int(hp.mlp_ratio * d_model + 1e-6)
    return hp.mlp_multiple_of * math.ceil(hidden / hp.mlp_multiple_of)


def kv_heads(hp: TransformerHParams, dims: Mapping[str, int]) -> int:
    """Key/value heads: the hparam if set, else the size's ``n_kv_heads``, else ``n_heads`` (plain MHA)."""
    if hp.n_kv_heads is not None:
        return int(hp.n_kv_heads)
    return int(dims.get("n_kv_heads", dims["n_heads"]))


def _one_of(errors: list, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        errors.append((f"arch.{key}", value, f"choose one of: {', '.join(allowed)}"))


def check(hp: TransformerHParams, dims: Mapping[str, int], seq_len: int | None = None) -> tuple[list, list[str]]:
    """``(errors, warnings)``: errors are ``(key, value, what is allowed)``, warnings sentences."""
    errors: list[tuple[str, Any, str]] = []
    warnings: list[str] = []
    _one_of(errors, "norm", hp.norm, NORMS)
    _one_of(errors, "norm_position", hp.norm_position, NORM_POSITIONS)
    if "alibi" in str(hp.position) and "rope" in str(hp.position):
        # one position scheme per model: ALiBi biases the scores of un-rotated q, k (Press et al., 2022)
        errors.append(("arch.position", hp.position, "ALiBi and RoPE do not combine: choose one of rope, alibi"))
    else:
        _one_of(errors, "position", hp.position, POSITIONS)
    _one_of(errors, "mlp", hp.mlp, MLPS)
    _one_of(errors, "residual", hp.residual, RESIDUALS)
    if hp.residual == "parallel" and hp.norm_position == "post":
        errors.append(("arch.residual", hp.residual, "a parallel residual needs arch.norm_position=pre"))
    n_heads, n_kv = int(dims["n_heads"]), kv_heads(hp, dims)
    if n_kv < 1 or n_heads % n_kv:
        errors.append(("arch.n_kv_heads", n_kv, f"a divisor of n_heads={n_heads} (n_heads = MHA, 1 = MQA)"))
    if dims["d_model"] % n_heads:
        errors.append(("size", dict(dims), f"d_model={dims['d_model']} is not a multiple of n_heads={n_heads}"))
    if hp.rotary_fraction != 1.0 and hp.position != "rope":
        errors.append(("arch.rotary_fraction", hp.rotary_fraction, "only with arch.position=rope"))
    if hp.position == "rope":
        rot = int(dims["d_model"] // n_heads * hp.rotary_fraction)
        if rot <= 0 or rot % 2:
            errors.append(("arch.rotary_fraction", hp.rotary_fraction, "must rotate a positive even number of dims"))
    if hp.sliding_window is not None and hp.sliding_window < 1:
        errors.append(("arch.sliding_window", hp.sliding_window, "a positive number of positions, or null"))
    if seq_len is not None and hp.position == "learned" and seq_len > hp.max_positions:
        errors.append(("arch.max_positions", hp.max_positions, f"at least data.seq_len={seq_len}"))
    if seq_len is not None and hp.sliding_window is not None and hp.sliding_window >= seq_len:
        warnings.append(
            f"arch.sliding_window={hp.sliding_window} is not smaller than data.seq_len={seq_len}: "
            "the window has no effect (every position already sees its whole prefix)"
        )
    return errors, warnings


def raise_on_errors(hp: TransformerHParams, dims: Mapping[str, int]) -> None:
    """ValueError naming the first bad value (building a model directly, without the config's checks)."""
    errors, _ = check(hp, dims)
    if errors:
        key, value, allowed = errors[0]
        raise ValueError(f"{key}={value!r}: {allowed}")
