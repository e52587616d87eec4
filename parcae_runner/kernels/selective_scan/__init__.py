"""Mamba-1 selective scan: dispatcher between the Triton kernel and the pure-torch reference."""

from __future__ import annotations

from torch import Tensor

from parcae_runner.kernels._host import IMPLS, apply_eagerly, resolve_impl
from parcae_runner.kernels.selective_scan.reference import check_selective_scan_shapes, selective_scan_reference

__all__ = ["selective_scan", "selective_scan_reference", "IMPLS"]


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    impl: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-1 selective scan (semantics of mamba_ssm's ``selective_scan_fn`` / ``selective_scan_ref``).

    Shapes: u, delta, z: [Bt, Dm, L]; A: [Dm, N] (real, negative); B, C: [Bt, N, L] (input-dependent);
    D, delta_bias: [Dm]. delta = softplus(delta + delta_bias) if delta_softplus.

        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t ;  y_t = <C_t, h_t> + D * u_t ;
        out = y * silu(z) if z is given.

    Computed in fp32 internally; out is cast to u's dtype. Gradients flow to every tensor input; ``last_state``
    is differentiable on the reference path only (the Triton path returns it without a graph, as mamba_ssm does).
    The Triton path accepts any strides and gives out (and the gradients of u, delta, z) u's layout.

    Args:
        impl: "auto" (Triton when the inputs are on CUDA and triton imports, else reference), "triton"
            (CUDA tensors, or CPU tensors with TRITON_INTERPRET=1), or "reference".

    Returns:
        out [Bt, Dm, L], or (out, last_state [Bt, Dm, N] fp32) if return_last_state.
    """
    if resolve_impl("selective_scan", impl, u) == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    from parcae_runner.kernels.selective_scan.triton import SelectiveScanFn, check_interpretable

    check_selective_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    check_interpretable(u)
    out, last = apply_eagerly(SelectiveScanFn, u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return (out, last) if return_last_state else out
