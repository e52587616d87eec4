"""Triton RWKV-4 WKV: forward + backward kernels wrapped in a ``torch.autograd.Function``.

Same recurrence as the RWKV-4 CUDA kernel (state (p, q, o) = HF's (num, den, max), o starting at -1e38),
extended with an optional incoming state. One program per (batch row, block of BLOCK_C channels) scans over T
with the state in registers; channels are independent, so there are no cross-lane reductions.

Backward (the RWKV-4 CUDA backward, with global scratch instead of per-thread arrays):
  pass 1, forward in t: recomputes the state, accumulates dL/dw and dL/du, and stores per step
    y_t, q_t = dL/dy_t / den_t and r_t = u + k_t - max_t into fp32 scratch [B, T, C];
  pass 2, backward in t: accumulates sum_{s>t} q_s e^{(s-1-t) w} (and the same weighted by y_s) in
    max-stabilised form and writes dL/dk_t and dL/dv_t.

The incoming ``state`` is treated as non-differentiable (no gradient flows to it) and the returned final state
carries no graph; gradients flow to time_decay, time_first, key and value. Output buffers come from
``kernels._host`` (NaN-filled under ``PARCAE_KERNEL_POISON=1``, so unwritten elements show up in tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from parcae_runner.kernels import _host
from parcae_runner.kernels._host import alloc


@triton.jit
def _wkv4_fwd_kernel(
    w_ptr,
    u_ptr,
    k_ptr,
    v_ptr,
    num0_ptr,
    den0_ptr,
    max0_ptr,
    out_ptr,
    num_ptr,
    den_ptr,
    max_ptr,
    T,
    C,
    s_k_b,
    s_k_t,
    s_k_c,
    s_v_b,
    s_v_t,
    s_v_c,
    s_o_b,
    s_o_t,
    s_o_c,
    BLOCK_C: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = offs_c < C
    # w = -exp(time_decay), computed once by the wrapper (fp32)
    w = tl.load(w_ptr + offs_c, mask=mask, other=0.0)
    u = tl.load(u_ptr + offs_c, mask=mask, other=0.0)
    # states are contiguous fp32 [B, C]
    st = pid_b * C + offs_c
    aa = tl.load(num0_ptr + st, mask=mask, other=0.0)
    bb = tl.load(den0_ptr + st, mask=mask, other=0.0)
    pp = tl.load(max0_ptr + st, mask=mask, other=-1e38)
    k_base = k_ptr + pid_b * s_k_b + offs_c * s_k_c
    v_base = v_ptr + pid_b * s_v_b + offs_c * s_v_c
    o_base = out_ptr + pid_b * s_o_b + offs_c * s_o_c
    for t in range(0, T):
        kk = tl.load(k_base + t * s_k_t, mask=mask, other=0.0).to(tl.float32)
        vv = tl.load(v_base + t * s_v_t, mask=mask, other=0.0).to(tl.float32)
        ww = u + kk
        p = tl.maximum(pp, ww)
        e1 = tl.exp(pp - p)
        e2 = tl.exp(ww - p)
        y = (e1 * aa + e2 * vv) / (e1 * bb + e2)
        tl.store(o_base + t * s_o_t, y.to(out_ptr.dtype.element_ty), mask=mask)
        ww = w + pp
        p = tl.maximum(ww, kk)
        e1 = tl.exp(ww - p)
        e2 = tl.exp(kk - p)
        aa = e1 * aa + e2 * vv
        bb = e1 * bb + e2
        pp = p
    tl.store(num_ptr + st, aa, mask=mask)
    tl.store(den_ptr + st, bb, mask=mask)
    tl.store(max_ptr + st, pp, mask=mask)


@triton.jit
def _wkv4_bwd_kernel(
    w_ptr,
    u_ptr,
    k_ptr,
    v_ptr,
    num0_ptr,
    den0_ptr,
    max0_ptr,
    gy_ptr,
    y_buf,
    q_buf,
    r_buf,
    gk_ptr,
    gv_ptr,
    gw_part_ptr,
    gu_part_ptr,
    T,
    C,
    s_k_b,
    s_k_t,
    s_k_c,
    s_v_b,
    s_v_t,
    s_v_c,
    s_g_b,
    s_g_t,
    s_g_c,
    s_gk_b,
    s_gk_t,
    s_gk_c,
    s_gv_b,
    s_gv_t,
    s_gv_c,
    BLOCK_C: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = offs_c < C
    w = tl.load(w_ptr + offs_c, mask=mask, other=0.0)
    u = tl.load(u_ptr + offs_c, mask=mask, other=0.0)
    st = pid_b * C + offs_c
    aa = tl.load(num0_ptr + st, mask=mask, other=0.0)
    bb = tl.load(den0_ptr + st, mask=mask, other=0.0)
    pp = tl.load(max0_ptr + st, mask=mask, other=-1e38)
    k_base = k_ptr + pid_b * s_k_b + offs_c * s_k_c
    v_base = v_ptr + pid_b * s_v_b + offs_c * s_v_c
    g_base = gy_ptr + pid_b * s_g_b + offs_c * s_g_c
    # scratch y / q / r: contiguous fp32 [B, T, C]
    buf = pid_b * T * C + offs_c

    # pass 1 (forward in t). ga, gb: d(num)/dw, d(den)/dw in the same exp(-max) scale as aa, bb; they start
    # at 0 because the incoming state is a constant
    ga = tl.zeros((BLOCK_C,), dtype=tl.float32)
    gb = tl.zeros((BLOCK_C,), dtype=tl.float32)
    gw = tl.zeros((BLOCK_C,), dtype=tl.float32)
    gu = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for t in range(0, T):
        kk = tl.load(k_base + t * s_k_t, mask=mask, other=0.0).to(tl.float32)
        vv = tl.load(v_base + t * s_v_t, mask=mask, other=0.0).to(tl.float32)
        gy = tl.load(g_base + t * s_g_t, mask=mask, other=0.0).to(tl.float32)
        ww = u + kk
        p = tl.maximum(pp, ww)
        e1 = tl.exp(pp - p)
        e2 = tl.exp(ww - p)
        den = e1 * bb + e2
        y = (e1 * aa + e2 * vv) / den
        qq = gy / den
        gw += (ga - gb * y) * e1 * qq
        gu += (vv - y) * e2 * qq
        tl.store(y_buf + buf + t * C, y, mask=mask)
        tl.store(q_buf + buf + t * C, qq, mask=mask)
        tl.store(r_buf + buf + t * C, ww - p, mask=mask)
        ww = w + pp
        p = tl.maximum(ww, kk)
        e1 = tl.exp(ww - p)
        e2 = tl.exp(kk - p)
        ga = e1 * (aa + ga)
        gb = e1 * (bb + gb)
        aa = e1 * aa + e2 * vv
        bb = e1 * bb + e2
        pp = p
    # d/d(time_decay) = d/dw * dw/d(time_decay) = d/dw * w, since w = -exp(time_decay); per-batch partials
    tl.store(gw_part_ptr + st, gw * w, mask=mask)
    tl.store(gu_part_ptr + st, gu, mask=mask)
    # pass 2 reads what pass 1 stored; the barrier orders it across the program's threads
    tl.debug_barrier()

    # pass 2 (backward in t): aa = sum_{s>t} q_s e^{(s-1-t) w - max_s}, bb = the same weighted by -y_s,
    # both kept as (value, log-scale pp)
    aa = tl.zeros((BLOCK_C,), dtype=tl.float32)
    bb = tl.zeros((BLOCK_C,), dtype=tl.float32)
    pp = tl.full((BLOCK_C,), -1e38, dtype=tl.float32)
    gk_base = gk_ptr + pid_b * s_gk_b + offs_c * s_gk_c
    gv_base = gv_ptr + pid_b * s_gv_b + offs_c * s_gv_c
    for j in range(0, T):
        t = T - 1 - j
        kk = tl.load(k_base + t * s_k_t, mask=mask, other=0.0).to(tl.float32)
        vv = tl.load(v_base + t * s_v_t, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(y_buf + buf + t * C, mask=mask, other=0.0)
        qq = tl.load(q_buf + buf + t * C, mask=mask, other=0.0)
        rr = tl.load(r_buf + buf + t * C, mask=mask, other=0.0)
        e1 = qq * tl.exp(rr)
        e2 = tl.exp(kk + pp)
        gk = e1 * (vv - y) + e2 * (aa * vv + bb)
        gv = e1 + e2 * aa
        tl.store(gk_base + t * s_gk_t, gk.to(gk_ptr.dtype.element_ty), mask=mask)
        tl.store(gv_base + t * s_gv_t, gv.to(gv_ptr.dtype.element_ty), mask=mask)
        ww = w + pp
        www = rr - u - kk
        p = tl.maximum(ww, www)
        e1 = tl.exp(ww - p)
        e2 = qq * tl.exp(www - p)
        aa = e1 * aa + e2
        bb = e1 * bb - e2 * y
        pp = p


def _block_c(c: int) -> int:
    # 32 channels per program, one per thread of a single warp, like the RWKV-4 CUDA kernel: the scan is
    # latency-bound, so more, smaller programs beat wider ones
    return min(32, triton.next_power_of_2(c))


class WKV4Fn(torch.autograd.Function):
    """``apply(time_decay, time_first, key, value, num0, den0, max0) -> (out, num, den, max)``, shapes checked first.

    time_decay, time_first: [C]; key, value: [B, T, C] (any strides); the incoming state num0, den0, max0: [B, C]
    fp32 contiguous, non-differentiable (no gradient reaches it), as is the returned one. out is in key's dtype.
    """

    @staticmethod
    def forward(
        ctx,
        time_decay: Tensor,
        time_first: Tensor,
        key: Tensor,
        value: Tensor,
        num0: Tensor,
        den0: Tensor,
        max0: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, t, c = key.shape
        w = -torch.exp(time_decay.float()).contiguous()
        u = time_first.float().contiguous()
        out = alloc((b, t, c), key)
        num = alloc((b, c), key, torch.float32)
        den = alloc((b, c), key, torch.float32)
        mx = alloc((b, c), key, torch.float32)
        block_c = _block_c(c)
        _wkv4_fwd_kernel[(b, triton.cdiv(c, block_c))](
            w,
            u,
            key,
            value,
            num0,
            den0,
            max0,
            out,
            num,
            den,
            mx,
            t,
            c,
            *key.stride(),
            *value.stride(),
            *out.stride(),
            BLOCK_C=block_c,
            num_warps=1,
        )
        ctx.save_for_backward(w, u, key, value, num0, den0, max0)
        ctx.dtypes = (time_decay.dtype, time_first.dtype)
        ctx.mark_non_differentiable(num, den, mx)
        return out, num, den, mx

    @staticmethod
    def backward(ctx, gy: Tensor, *_state_grads: Tensor | None):
        w, u, key, value, num0, den0, max0 = ctx.saved_tensors
        td_dtype, tf_dtype = ctx.dtypes
        b, t, c = key.shape
        f32 = torch.float32
        # scratch is fully written by pass 1 before pass 2 reads it: no poisoning needed
        y_buf = torch.empty((b, t, c), dtype=f32, device=key.device)
        q_buf = torch.empty_like(y_buf)
        r_buf = torch.empty_like(y_buf)
        gk = alloc((b, t, c), key)
        gv = alloc((b, t, c), value)
        gw_part = alloc((b, c), key, f32)
        gu_part = alloc((b, c), key, f32)
        block_c = _block_c(c)
        _wkv4_bwd_kernel[(b, triton.cdiv(c, block_c))](
            w,
            u,
            key,
            value,
            num0,
            den0,
            max0,
            gy,
            y_buf,
            q_buf,
            r_buf,
            gk,
            gv,
            gw_part,
            gu_part,
            t,
            c,
            *key.stride(),
            *value.stride(),
            *gy.stride(),
            *gk.stride(),
            *gv.stride(),
            BLOCK_C=block_c,
            num_warps=1,
        )
        return gw_part.sum(0).to(td_dtype), gu_part.sum(0).to(tf_dtype), gk, gv, None, None, None


def check_interpretable(x: Tensor) -> None:
    """CPU tensors need this module's kernels built by the interpreter (TRITON_INTERPRET=1 when it was imported)."""
    _host.check_interpretable(x, _wkv4_fwd_kernel, __name__)
