"""Mamba-1 selective scan: dispatcher between the Triton kernel and the pure-torch reference."""

from __future__ import annotations

import os

from torch import Tensor

from parcae_runner.kernels.selective_scan.reference import selective_scan_reference

__all__ = ["selective_scan", "selective_scan_reference", "IMPLS"]

IMPLS = ("auto", "triton", "reference")


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


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

    Args:
        impl: "auto" (Triton when the inputs are on CUDA and triton imports, else reference), "triton"
            (CUDA tensors, or CPU tensors with TRITON_INTERPRET=1), or "reference".

    Returns:
        out [Bt, Dm, L], or (out, last_state [Bt, Dm, N] fp32) if return_last_state.
    """
    if impl not in IMPLS:
        raise ValueError(f"selective_scan: unknown impl={impl!r}; allowed: {', '.join(map(repr, IMPLS))}")
    if impl == "auto":
        impl = "triton" if (u.is_cuda and _triton_available()) else "reference"
    if impl == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if not u.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "selective_scan(impl='triton') needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is "
            "imported to run the kernels on CPU (slow, for tests); use impl='reference' or 'auto' on CPU"
        )
    if not _triton_available():
        raise RuntimeError("selective_scan(impl='triton'): triton is not installed")
    from parcae_runner.kernels.selective_scan.triton import selective_scan_triton

    return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
