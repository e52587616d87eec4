"""Pure-torch RWKV-4 WKV: THE definition the Triton kernel is tested against.

Same math and state convention as ``transformers.models.rwkv.modeling_rwkv.rwkv_linear_attention_cpu``
(numerically stable form: the state stores numerator and denominator scaled by exp(-max)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from parcae_runner.kernels._host import check_like, check_sequence, check_sizes

# HF initialises the max-exponent state to -1e38 (the CUDA kernel's o = -1e38): "minus infinity" that stays finite
MAX_STATE_INIT = -1e38

WKVState = tuple[Tensor, Tensor, Tensor]


def check_wkv4_shapes(
    time_decay: Tensor, time_first: Tensor, key: Tensor, value: Tensor, state: Sequence[Tensor] | None
) -> None:
    """Raise ValueError when the shapes do not follow the documented layout."""
    b, _, c = check_sequence("key", key, ("B", "T", "C"), seq=1)
    check_like("value", value, "key", key)
    check_sizes("time_decay", time_decay, C=c)
    check_sizes("time_first", time_first, C=c)
    if state is not None:
        if len(state) != 3:
            raise ValueError(f"state must be (num, den, max), got {len(state)} tensors")
        for name, t in zip(("num", "den", "max"), state, strict=True):
            check_sizes(f"state {name}", t, B=b, C=c)


def initial_wkv4_state(key: Tensor) -> WKVState:
    """Empty state for key [B, T, C]: (num=0, den=0, max=-1e38), each [B, C] fp32."""
    b, _, c = key.shape
    zeros = torch.zeros((b, c), dtype=torch.float32, device=key.device)
    return zeros, zeros.clone(), torch.full((b, c), MAX_STATE_INIT, dtype=torch.float32, device=key.device)


def wkv4_reference(
    time_decay: Tensor,
    time_first: Tensor,
    key: Tensor,
    value: Tensor,
    state: Sequence[Tensor] | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, WKVState]:
    """Sequential RWKV-4 WKV in fp32, differentiable by autograd (also through ``state``).

    Args:
        time_decay: [C]; the per-step decay applied is w = -exp(time_decay).
        time_first: [C] bonus u for the current token.
        key, value: [B, T, C].
        state: optional (num [B, C], den [B, C], max [B, C]) to continue from.
        return_state: also return the final state.

    Returns:
        out [B, T, C] in key's dtype, or (out, (num, den, max) each [B, C] fp32) if return_state.
    """
    check_wkv4_shapes(time_decay, time_first, key, value, state)
    if state is None:
        num, den, mx = initial_wkv4_state(key)
    else:
        num, den, mx = (s.float() for s in state)
    w = -torch.exp(time_decay.float())
    u = time_first.float()
    k_all = key.float()
    v_all = value.float()
    outs = []
    for t in range(key.shape[1]):
        k = k_all[:, t]
        v = v_all[:, t]
        # output at t: the current token gets the bonus u instead of the decay
        m_out = torch.maximum(mx, k + u)
        e1 = torch.exp(mx - m_out)
        e2 = torch.exp(k + u - m_out)
        outs.append((e1 * num + e2 * v) / (e1 * den + e2))
        # state update: decay the past by w, add the current token with weight exp(k)
        m_state = torch.maximum(mx + w, k)
        e1 = torch.exp(mx + w - m_state)
        e2 = torch.exp(k - m_state)
        num = e1 * num + e2 * v
        den = e1 * den + e2
        mx = m_state
    out = torch.stack(outs, dim=1).to(key.dtype)
    return (out, (num, den, mx)) if return_state else out
