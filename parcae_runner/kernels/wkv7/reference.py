"""Pure-torch RWKV-7 WKV (the generalized delta rule): THE definition the Triton kernel is tested against.

Per head, with a state ``S`` of shape ``[N_v, N_k]`` (value x key) and per-step vectors of size N
(BlinkDL ``RWKV-LM/RWKV-v7/rwkv_v7_demo.py`` ``RWKV7_OP``; the ``rwkv`` package's CPU loop in
``RWKV_x070_TMix_seq``)::

    S_t = S_{t-1} (diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T
    y_t = S_t r_t

``w`` is the LOG decay (<= 0, fla's convention; BlinkDL's kernels take w~ with decay exp(-exp(w~)), so
w = -exp(w~)); RWKV-7 passes a = -kk and b = kk * a. The state is carried in fp32 whatever the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from parcae_runner.kernels._host import check_like, check_sizes

NAMES = ("r", "w", "k", "v", "a", "b")


def check_wkv7_shapes(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None) -> None:
    """Raise ValueError unless every input is ``[B, T, H, N]`` (T >= 1) and state ``[B, H, N, N]``."""
    if r.dim() != 4:
        raise ValueError(f"r must be [B, T, H, N], got shape {tuple(r.shape)}")
    if r.shape[1] < 1:
        raise ValueError("the sequence length T must be >= 1")
    for name, t in zip(NAMES[1:], (w, k, v, a, b), strict=True):
        check_like(name, t, "r", r)
    bsz, _, h, n = r.shape
    check_sizes("state", state, B=bsz, H=h, Nv=n, Nk=n)


def initial_wkv7_state(r: Tensor) -> Tensor:
    """Zero state for r ``[B, T, H, N]``: ``[B, H, N, N]`` fp32."""
    bsz, _, h, n = r.shape
    return torch.zeros((bsz, h, n, n), dtype=torch.float32, device=r.device)


def wkv7_reference(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """One step at a time, fp32 state; differentiable in every input including ``state``.

    r, w, k, v, a, b: ``[B, T, H, N]`` (w = log decay); state: ``[B, H, N, N]`` (value x key) or None (zeros).
    Returns y ``[B, T, H, N]`` in r's dtype, and the final state ``[B, H, N, N]`` fp32 if ``return_state``.
    """
    check_wkv7_shapes(r, w, k, v, a, b, state)
    s = initial_wkv7_state(r) if state is None else state.float()
    rf, wf, kf, vf, af, bf = (t.float() for t in (r, w, k, v, a, b))
    decay = torch.exp(wf)
    ys = []
    for t in range(r.shape[1]):
        # S a: [B, H, N_v]
        sa = torch.einsum("bhvk,bhk->bhv", s, af[:, t])
        s = (
            s * decay[:, t, :, None, :]
            + sa[..., :, None] * bf[:, t, :, None, :]
            + vf[:, t, :, :, None] * kf[:, t, :, None, :]
        )
        ys.append(torch.einsum("bhvk,bhk->bhv", s, rf[:, t]))
    y = torch.stack(ys, 1).to(r.dtype)  # [B, T, H, N]
    return (y, s) if return_state else y
