"""Pure-torch Mamba-1 selective scan: THE definition the Triton kernel is tested against.

Same semantics as ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref`` for real ``A`` and
input-dependent ``B``/``C`` of shape [Bt, N, L] (no groups).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
    if u.dim() != 3:
        raise ValueError(f"u must be [Bt, Dm, L], got shape {tuple(u.shape)}")
    bt, dm, length = u.shape
    if length < 1:
        raise ValueError("the sequence length L must be >= 1")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dm:
        raise ValueError(f"A must be [Dm={dm}, N], got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported (Mamba-1 LM blocks use real A)")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (bt, n, length):
            raise ValueError(f"{name} must be [Bt={bt}, N={n}, L={length}], got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dm,):
            raise ValueError(f"{name} must be [Dm={dm}], got {tuple(t.shape)}")


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
