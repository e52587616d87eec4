"""RWKV-7 WKV (generalized delta rule): dispatcher between the Triton kernel and the pure-torch reference."""

from __future__ import annotations

import torch
from torch import Tensor

from parcae_runner.kernels._host import IMPLS, apply_eagerly, resolve_impl
from parcae_runner.kernels.wkv7.reference import check_wkv7_shapes, initial_wkv7_state, wkv7_reference

__all__ = ["wkv7", "wkv7_reference", "initial_wkv7_state", "IMPLS"]


def wkv7(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    return_state: bool = False,
    impl: str = "auto",
    forward: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """RWKV-7 WKV: ``S_t = S_{t-1}(diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T``, ``y_t = S_t r_t`` per head.

    r, w, k, v, a, b: ``[B, T, H, N]`` (w is the log decay, <= 0; RWKV-7 passes a = -kk, b = kk * a);
    state: ``[B, H, N, N]`` (value x key) to continue from, or None (zeros). Computed with an fp32 state.
    Gradients flow to every input, the incoming state included, on both paths.

    Args:
        impl: "auto" (Triton when the inputs are on CUDA and triton imports, else reference), "triton"
            (CUDA tensors, or CPU tensors with TRITON_INTERPRET=1), or "reference".
        forward: the Triton forward: "chunk" (chunks of 16 steps as matrix products, a triangular solve for the
            rank-1 corrections), "step" (one step at a time) or "auto" (chunked unless some log decay < -5, where
            the chunk's exp(-cumsum(w)) scaling would leave fp32). The backward is per-step either way.

    Returns:
        y ``[B, T, H, N]`` in r's dtype, or (y, final state ``[B, H, N, N]`` fp32) if return_state.
    """
    if resolve_impl("wkv7", impl, r) == "reference":
        return wkv7_reference(r, w, k, v, a, b, state, return_state)
    from parcae_runner.kernels.wkv7.triton import WKV7Fn, check_interpretable

    check_wkv7_shapes(r, w, k, v, a, b, state)
    check_interpretable(r)
    start = initial_wkv7_state(r) if state is None else state.to(torch.float32)
    y, final = apply_eagerly(WKV7Fn, r, w, k, v, a, b, start, forward)
    return (y, final) if return_state else y
