"""RWKV-4 WKV: dispatcher between the Triton kernel and the pure-torch reference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from parcae_runner.kernels._host import IMPLS, apply_eagerly, resolve_impl
from parcae_runner.kernels.wkv4.reference import (
    MAX_STATE_INIT,
    WKVState,
    check_wkv4_shapes,
    initial_wkv4_state,
    wkv4_reference,
)

__all__ = ["wkv4", "wkv4_reference", "initial_wkv4_state", "MAX_STATE_INIT", "WKVState", "IMPLS"]


def wkv4(
    time_decay: Tensor,
    time_first: Tensor,
    key: Tensor,
    value: Tensor,
    state: Sequence[Tensor] | None = None,
    return_state: bool = False,
    impl: str = "auto",
) -> Tensor | tuple[Tensor, WKVState]:
    """RWKV-4 WKV, numerically stable form (semantics of transformers' ``rwkv_linear_attention_cpu``).

    time_decay, time_first: [C] (w = -exp(time_decay) is applied inside); key, value: [B, T, C];
    state: optional (num [B, C], den [B, C], max [B, C]) to continue from (HF's layout: numerator,
    denominator, max exponent; a fresh state is (0, 0, -1e38)). Computed in fp32 internally.

    Unlike HF (which always returns ``(output, state_or_None)``), this returns ``out`` alone unless
    ``return_state`` is set, like ``selective_scan``.

    Gradients flow to time_decay, time_first, key and value. The Triton path treats ``state`` as
    non-differentiable (no gradient to the incoming state; the returned state carries no graph);
    the reference path differentiates through everything.

    Args:
        impl: "auto" (Triton when the inputs are on CUDA and triton imports, else reference), "triton"
            (CUDA tensors, or CPU tensors with TRITON_INTERPRET=1), or "reference".

    Returns:
        out [B, T, C] in key's dtype, or (out, (num, den, max) each [B, C] fp32) if return_state.
    """
    if resolve_impl("wkv4", impl, key) == "reference":
        return wkv4_reference(time_decay, time_first, key, value, state, return_state)
    from parcae_runner.kernels.wkv4.triton import WKV4Fn, check_interpretable

    check_wkv4_shapes(time_decay, time_first, key, value, state)
    check_interpretable(key)
    # detached: the kernel does not differentiate through the incoming state
    start = initial_wkv4_state(key) if state is None else [s.detach().to(torch.float32).contiguous() for s in state]
    out, num, den, mx = apply_eagerly(WKV4Fn, time_decay, time_first, key, value, *start)
    return (out, (num, den, mx)) if return_state else out
