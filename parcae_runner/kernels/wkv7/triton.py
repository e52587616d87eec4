"""Triton RWKV-7 WKV: a recurrent forward and backward with chunk checkpoints, in a ``torch.autograd.Function``.

One program per (batch row, head) keeps the ``[N_v, N_k]`` state in registers and walks the sequence one step at a
time (the update is a rank-2 correction of a diagonal decay; see ``reference.py`` for the equations, after
BlinkDL ``RWKV-v7/cuda/wkv7_cuda.cu``, which is also per-step with state checkpoints every CHUNK_LEN = 16 steps).

* forward: stores y and, at the start of every chunk of CHUNK steps, the state into ``[B*H, NC, N, N]`` fp32.
* backward: walks the chunks last to first; for each one it recomputes S_{t-1} for every step of the chunk from the
  checkpoint into a ``[B*H, CHUNK, N, N]`` scratch, then goes backwards through the chunk with dS (the gradient of
  the loss w.r.t. the state after step t)::

      dS += dy_t r_t^T;  dr_t = S_t^T dy_t;  dv_t = dS k_t;  dk_t = dS^T v_t
      sa = S_{t-1} a_t;  db_t = dS^T sa;  dsa = dS b_t;  da_t = S_{t-1}^T dsa
      dw_t = exp(w_t) * colsum(dS * S_{t-1});  dS <- dS diag(exp(w_t)) + dsa a_t^T

  and finally writes dS as the gradient of the incoming state.

This is not a chunked-parallel (WY / DPLR) kernel like fla's ``chunk_rwkv7``: time is sequential inside a program.
Outputs come from ``kernels._host.alloc`` (NaN-filled under ``PARCAE_KERNEL_POISON=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from parcae_runner.kernels import _host
from parcae_runner.kernels._host import alloc

# steps between state checkpoints (BlinkDL's CHUNK_LEN): memory B*H*ceil(T/16)*N*N fp32 for the checkpoints
CHUNK = 16


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


class WKV7Fn(torch.autograd.Function):
    """(r, w, k, v, a, b ``[B, T, H, N]``, s0 ``[B, H, N, N]`` fp32) -> (y ``[B, T, H, N]``, final state fp32)."""

    @staticmethod
    def forward(ctx, r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, s0: Tensor):
        inputs = [x.contiguous() for x in (r, w, k, v, a, b)]
        s0 = s0.contiguous()
        bsz, t, h, n, nc = _launch_shape(r)
        y = alloc((bsz, t, h, n), r)
        final = alloc((bsz, h, n, n), r, torch.float32)
        checkpoints = alloc((bsz * h, nc, n, n), r, torch.float32)
        block_n = triton.next_power_of_2(n)
        _wkv7_fwd_kernel[(bsz * h,)](
            *inputs, s0, y, final, checkpoints, t, h, n, nc, CHUNK=CHUNK, BLOCK_N=block_n, num_warps=4
        )
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
        return (*grads, ds0)


def check_interpretable(x: Tensor) -> None:
    """CPU tensors need this module's kernels built by the interpreter (TRITON_INTERPRET=1 when it was imported)."""
    _host.check_interpretable(x, _wkv7_fwd_kernel, __name__)
