"""Pure-torch Mamba-1 selective scan: THE definition the Triton kernel is tested against.

Same semantics as ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref`` for real ``A`` and
input-dependent ``B``/``C`` of shape [Bt, N, L] (no groups).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from parcae_runner.kernels._host import check_like, check_sequence, check_sizes


def check_selective_scan_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    """Raise ValueError when the shapes do not follow the documented layout."""
    bt, dm, length = check_sequence("u", u, ("Bt", "Dm", "L"), seq=2)
    check_like("delta", delta, "u", u)
    if A.dim() != 2 or A.shape[0] != dm:
        raise ValueError(f"A must be [Dm={dm}, N], got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported (Mamba-1 LM blocks use real A)")
    check_sizes("B", B, Bt=bt, N=A.shape[1], L=length)
    check_sizes("C", C, Bt=bt, N=A.shape[1], L=length)
    check_like("z", z, "u", u)
    check_sizes("D", D, Dm=dm)
    check_sizes("delta_bias", delta_bias, Dm=dm)


def selective_scan_reference(
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
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential selective scan, fp32 inside, differentiable by autograd.

    Args:
        u: [Bt, Dm, L] input.
        delta: [Bt, Dm, L] step sizes (before bias / softplus).
        A: [Dm, N] real (negative) state matrix diagonal.
        B: [Bt, N, L] input projection per step.
        C: [Bt, N, L] output projection per step.
        D: optional [Dm] skip connection.
        z: optional [Bt, Dm, L] gate; the output is multiplied by silu(z).
        delta_bias: optional [Dm] added to delta before softplus.
        delta_softplus: apply softplus to (delta + delta_bias).
        return_last_state: also return the final state.

    Returns:
        out [Bt, Dm, L] in u's dtype, or (out, last_state [Bt, Dm, N] fp32) if return_last_state.
    """
    check_selective_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    u_f = u.float()
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    a = A.float()
    b = B.float()
    c = C.float()
    bt, dm, length = u.shape
    x = u.new_zeros((bt, dm, a.shape[1]), dtype=torch.float32)
    ys = []
    # exp(delta*A) is formed per step rather than as a [Bt, Dm, L, N] tensor, to keep CPU memory bounded
    for t in range(length):
        d_t = dt[:, :, t, None]  # [Bt, Dm, 1]
        x = torch.exp(d_t * a) * x + (d_t * u_f[:, :, t, None]) * b[:, None, :, t]
        ys.append((x * c[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)  # [Bt, Dm, L]
    out = y if D is None else y + u_f * D.float()[None, :, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
