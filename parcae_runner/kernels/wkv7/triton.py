"""Triton RWKV-7 WKV: a chunked forward, a per-step backward from chunk checkpoints, in a ``torch.autograd.Function``.

One program per (batch row, head) keeps the ``[N_v, N_k]`` state in registers (equations in ``reference.py``;
BlinkDL ``RWKV-v7/cuda/wkv7_cuda.cu`` also checkpoints the state every CHUNK_LEN = 16 steps).

* chunked forward (``forward="chunk"``, the default for RWKV-7's decays): per chunk of C = 16 steps, with
  cw the inclusive cumulative log decay from the chunk start and S0 the state at it (the generalized delta rule's
  WY form, as fla ``chunk_dplr_delta_rule``), the rank-1 corrections u_t = S_{t-1} a_t solve the unit lower
  triangular system ``(I - tril(A_in B_out^T, -1)) U = A_in S0^T + tril(A_in K_out^T, -1) V`` (forward
  substitution), where A_in = a e^{cw - w}, B_out = b e^{-cw}, K_out = k e^{-cw}, R_in = r e^{cw}; then
  ``Y = R_in S0^T + tril(R_in B_out^T) U + tril(R_in K_out^T) V`` and
  ``S_C = S0 diag(e^{cw_C}) + U^T (b e^{cw_C - cw}) + V^T (k e^{cw_C - cw})``. The e^{-cw} factors need log decays
  >= -5 per step to stay inside fp32 (RWKV-7's are >= -e^{-0.5}); ``forward="auto"`` checks and otherwise runs
* the per-step forward (``forward="step"``): one step at a time. Both store the state at every chunk start.
* backward: walks the chunks last to first; for each one it recomputes S_{t-1} for every step of the chunk from the
  checkpoint into a ``[B*H, CHUNK, N, N]`` scratch, then goes backwards through the chunk with dS (the gradient of
  the loss w.r.t. the state after step t)::

      dS += dy_t r_t^T;  dr_t = S_t^T dy_t;  dv_t = dS k_t;  dk_t = dS^T v_t
      sa = S_{t-1} a_t;  db_t = dS^T sa;  dsa = dS b_t;  da_t = S_{t-1}^T dsa
      dw_t = exp(w_t) * colsum(dS * S_{t-1});  dS <- dS diag(exp(w_t)) + dsa a_t^T

  and finally writes dS as the gradient of the incoming state. The backward is sequential in time (not a chunked
  WY backward like fla's).
Outputs come from ``kernels._host.alloc`` (NaN-filled under ``PARCAE_KERNEL_POISON=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from parcae_runner.kernels import _host
from parcae_runner.kernels._host import alloc

# steps per chunk and between state checkpoints (BlinkDL's CHUNK_LEN): B*H*ceil(T/16)*N*N fp32 of checkpoints
CHUNK = 16
FORWARDS = ("auto", "chunk", "step")
# the chunked forward scales by exp(-cumsum(w)) within a chunk: at -5 per step, e^80 < fp32's max e^88.7
MIN_CHUNK_LOG_DECAY = -5.0


@triton.jit
def _wkv7_fwd_kernel(
    r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, s0_ptr, y_ptr, st_ptr, ck_ptr,
    T, H, N, NC,
    CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)  # b * H + h
    bi, hi = pid // H, pid % H
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    m2 = mask[:, None] & mask[None, :]
    st_off = offs[:, None] * N + offs[None, :]  # [N_v, N_k]
    s = tl.load(s0_ptr + pid * N * N + st_off, mask=m2, other=0.0)
    base = (bi * T * H + hi) * N
    for c in range(0, NC):
        tl.store(ck_ptr + (pid * NC + c) * N * N + st_off, s, mask=m2)
        t0 = c * CHUNK
        for t in range(t0, tl.minimum(t0 + CHUNK, T)):
            p = base + t * H * N + offs
            r = tl.load(r_ptr + p, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + p, mask=mask, other=0.0).to(tl.float32)
            k = tl.load(k_ptr + p, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + p, mask=mask, other=0.0).to(tl.float32)
            a = tl.load(a_ptr + p, mask=mask, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + p, mask=mask, other=0.0).to(tl.float32)
            sa = tl.sum(s * a[None, :], axis=1)  # [N_v]
            s = s * tl.exp(w)[None, :] + sa[:, None] * b[None, :] + v[:, None] * k[None, :]
            y = tl.sum(s * r[None, :], axis=1)  # [N_v]
            tl.store(y_ptr + p, y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(st_ptr + pid * N * N + st_off, s, mask=m2)


@triton.jit
def _wkv7_fwd_chunk_kernel(
    r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, s0_ptr, y_ptr, st_ptr, ck_ptr,
    T, H, N, NC,
    CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    bi, hi = pid // H, pid % H
    offs = tl.arange(0, BLOCK_N)
    rows = tl.arange(0, CHUNK)
    mask = offs < N
    m2 = mask[:, None] & mask[None, :]
    st_off = offs[:, None] * N + offs[None, :]  # [N_v, N_k]
    s = tl.load(s0_ptr + pid * N * N + st_off, mask=m2, other=0.0)
    strict = rows[:, None] > rows[None, :]  # [C, C]: j < s
    causal = rows[:, None] >= rows[None, :]
    base = (bi * T * H + hi) * N
    for c in range(0, NC):
        tl.store(ck_ptr + (pid * NC + c) * N * N + st_off, s, mask=m2)
        t = c * CHUNK + rows  # [C]
        tm = (t < T)[:, None] & mask[None, :]
        p = base + t[:, None] * H * N + offs[None, :]  # [C, N]
        r = tl.load(r_ptr + p, mask=tm, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + p, mask=tm, other=0.0).to(tl.float32)
        k = tl.load(k_ptr + p, mask=tm, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + p, mask=tm, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + p, mask=tm, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + p, mask=tm, other=0.0).to(tl.float32)
        cw = tl.cumsum(w, axis=0)  # log of the decay from the chunk start through step t
        a_in = a * tl.exp(cw - w)
        b_out = b * tl.exp(-cw)
        k_out = k * tl.exp(-cw)
        r_in = r * tl.exp(cw)
        m_ab = tl.where(strict, tl.dot(a_in, tl.trans(b_out), input_precision="ieee"), 0.0)
        m_ak = tl.where(strict, tl.dot(a_in, tl.trans(k_out), input_precision="ieee"), 0.0)
        # u_t = S_{t-1} a_t for every step: (I - M_ab) U = S0-part + M_ak V, by forward substitution
        rhs = tl.dot(a_in, tl.trans(s), input_precision="ieee") + tl.dot(m_ak, v, input_precision="ieee")
        u = tl.zeros((CHUNK, BLOCK_N), dtype=tl.float32)
        for i in range(0, CHUNK):
            sel = rows[:, None] == i
            m_row = tl.sum(tl.where(sel, m_ab, 0.0), axis=0)  # [C] over j
            u_i = tl.sum(tl.where(sel, rhs, 0.0), axis=0) + tl.sum(m_row[:, None] * u, axis=0)
            u = tl.where(sel, u_i[None, :], u)
        y = tl.dot(r_in, tl.trans(s), input_precision="ieee")
        y += tl.dot(tl.where(causal, tl.dot(r_in, tl.trans(b_out), input_precision="ieee"), 0.0), u,
                    input_precision="ieee")  # fmt: skip
        y += tl.dot(tl.where(causal, tl.dot(r_in, tl.trans(k_out), input_precision="ieee"), 0.0), v,
                    input_precision="ieee")  # fmt: skip
        tl.store(y_ptr + p, y.to(y_ptr.dtype.element_ty), mask=tm)
        last = tl.sum(tl.where(rows[:, None] == CHUNK - 1, cw, 0.0), axis=0)  # [N_k]: the whole chunk's log decay
        tail = tl.exp(last[None, :] - cw)  # [C, N_k]
        s = s * tl.exp(last)[None, :] + tl.dot(tl.trans(u), b * tail, input_precision="ieee")
        s += tl.dot(tl.trans(v), k * tail, input_precision="ieee")
    tl.store(st_ptr + pid * N * N + st_off, s, mask=m2)


@triton.jit
def _wkv7_bwd_kernel(
    r_ptr, w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, ck_ptr, dy_ptr, dst_ptr, scr_ptr,
    dr_ptr, dw_ptr, dk_ptr, dv_ptr, da_ptr, db_ptr, ds0_ptr,
    T, H, N, NC,
    CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    bi, hi = pid // H, pid % H
    offs = tl.arange(0, BLOCK_N)
    mask = offs < N
    m2 = mask[:, None] & mask[None, :]
    st_off = offs[:, None] * N + offs[None, :]
    ds = tl.load(dst_ptr + pid * N * N + st_off, mask=m2, other=0.0)
    base = (bi * T * H + hi) * N
    for ci in range(0, NC):
        c = NC - 1 - ci
        t0 = c * CHUNK
        t1 = tl.minimum(t0 + CHUNK, T)
        # recompute S_{t-1} for every step of the chunk into scratch slot t - t0
        s = tl.load(ck_ptr + (pid * NC + c) * N * N + st_off, mask=m2, other=0.0)
        for t in range(t0, t1):
            tl.store(scr_ptr + (pid * CHUNK + t - t0) * N * N + st_off, s, mask=m2)
            p = base + t * H * N + offs
            w = tl.load(w_ptr + p, mask=mask, other=0.0).to(tl.float32)
            k = tl.load(k_ptr + p, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + p, mask=mask, other=0.0).to(tl.float32)
            a = tl.load(a_ptr + p, mask=mask, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + p, mask=mask, other=0.0).to(tl.float32)
            sa = tl.sum(s * a[None, :], axis=1)
            s = s * tl.exp(w)[None, :] + sa[:, None] * b[None, :] + v[:, None] * k[None, :]
        tl.debug_barrier()
        for ti in range(0, t1 - t0):
            t = t1 - 1 - ti
            sp = tl.load(scr_ptr + (pid * CHUNK + t - t0) * N * N + st_off, mask=m2, other=0.0)  # S_{t-1}
            p = base + t * H * N + offs
            r = tl.load(r_ptr + p, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + p, mask=mask, other=0.0).to(tl.float32)
            k = tl.load(k_ptr + p, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + p, mask=mask, other=0.0).to(tl.float32)
            a = tl.load(a_ptr + p, mask=mask, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + p, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + p, mask=mask, other=0.0).to(tl.float32)
            decay = tl.exp(w)
            sa = tl.sum(sp * a[None, :], axis=1)  # [N_v]
            s = sp * decay[None, :] + sa[:, None] * b[None, :] + v[:, None] * k[None, :]  # S_t
            ds = ds + dy[:, None] * r[None, :]
            dsa = tl.sum(ds * b[None, :], axis=1)  # [N_v]
            tl.store(dr_ptr + p, tl.sum(s * dy[:, None], axis=0).to(dr_ptr.dtype.element_ty), mask=mask)
            tl.store(dv_ptr + p, tl.sum(ds * k[None, :], axis=1).to(dv_ptr.dtype.element_ty), mask=mask)
            tl.store(dk_ptr + p, tl.sum(ds * v[:, None], axis=0).to(dk_ptr.dtype.element_ty), mask=mask)
            tl.store(db_ptr + p, tl.sum(ds * sa[:, None], axis=0).to(db_ptr.dtype.element_ty), mask=mask)
            tl.store(da_ptr + p, tl.sum(sp * dsa[:, None], axis=0).to(da_ptr.dtype.element_ty), mask=mask)
            dw = tl.sum(ds * sp, axis=0) * decay
            tl.store(dw_ptr + p, dw.to(dw_ptr.dtype.element_ty), mask=mask)
            ds = ds * decay[None, :] + dsa[:, None] * a[None, :]
        tl.debug_barrier()
    tl.store(ds0_ptr + pid * N * N + st_off, ds, mask=m2)


def _launch_shape(r: Tensor) -> tuple[int, int, int, int, int]:
    bsz, t, h, n = r.shape
    return bsz, t, h, n, triton.cdiv(t, CHUNK)


def use_chunked_forward(w: Tensor, forward: str) -> bool:
    """Whether the chunked forward computes this call: ``forward`` is "chunk", "step" or "auto" (chunked when every
    log decay is >= MIN_CHUNK_LOG_DECAY, where exp(-cumsum(w)) over a chunk stays well inside fp32)."""
    if forward not in FORWARDS:
        raise ValueError(f"wkv7: unknown forward={forward!r}; allowed: {', '.join(map(repr, FORWARDS))}")
    if forward == "auto":
        return bool((w.detach().amin() >= MIN_CHUNK_LOG_DECAY).item())
    return forward == "chunk"


class WKV7Fn(torch.autograd.Function):
    """(r, w, k, v, a, b ``[B, T, H, N]``, s0 ``[B, H, N, N]`` fp32, forward) -> (y ``[B, T, H, N]``, final state
    fp32); ``forward`` picks the chunked or the per-step forward kernel (see ``use_chunked_forward``)."""

    @staticmethod
    def forward(ctx, r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, s0: Tensor, forward: str):
        inputs = [x.contiguous() for x in (r, w, k, v, a, b)]
        s0 = s0.contiguous()
        bsz, t, h, n, nc = _launch_shape(r)
        y = alloc((bsz, t, h, n), r)
        final = alloc((bsz, h, n, n), r, torch.float32)
        checkpoints = alloc((bsz * h, nc, n, n), r, torch.float32)
        if use_chunked_forward(w, forward):
            # tl.dot needs every dimension >= 16
            _wkv7_fwd_chunk_kernel[(bsz * h,)](
                *inputs, s0, y, final, checkpoints, t, h, n, nc,
                CHUNK=CHUNK, BLOCK_N=max(16, triton.next_power_of_2(n)), num_warps=4,
            )  # fmt: skip
        else:
            _wkv7_fwd_kernel[(bsz * h,)](
                *inputs, s0, y, final, checkpoints, t, h, n, nc,
                CHUNK=CHUNK, BLOCK_N=triton.next_power_of_2(n), num_warps=4,
            )  # fmt: skip
        ctx.save_for_backward(*inputs, checkpoints)
        return y, final

    @staticmethod
    def backward(ctx, dy: Tensor | None, dfinal: Tensor | None):
        *inputs, checkpoints = ctx.saved_tensors
        r = inputs[0]
        bsz, t, h, n, nc = _launch_shape(r)
        dy = torch.zeros_like(r) if dy is None else dy.contiguous()
        dfinal = r.new_zeros((bsz, h, n, n), dtype=torch.float32) if dfinal is None else dfinal.float().contiguous()
        # scratch is written before it is read within each chunk: no poisoning needed
        scratch = torch.empty((bsz * h, CHUNK, n, n), dtype=torch.float32, device=r.device)
        grads = [alloc(x.shape, x) for x in inputs]
        ds0 = alloc((bsz, h, n, n), r, torch.float32)
        _wkv7_bwd_kernel[(bsz * h,)](
            *inputs, checkpoints, dy, dfinal, scratch, *grads, ds0,
            t, h, n, nc, CHUNK=CHUNK, BLOCK_N=triton.next_power_of_2(n), num_warps=4,
        )  # fmt: skip
        return (*grads, ds0, None)


def check_interpretable(x: Tensor) -> None:
    """CPU tensors need this module's kernels built by the interpreter (TRITON_INTERPRET=1 when it was imported)."""
    _host.check_interpretable(x, _wkv7_fwd_kernel, __name__)
