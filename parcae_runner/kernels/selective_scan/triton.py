"""Triton Mamba-1 selective scan: forward + backward kernels wrapped in a ``torch.autograd.Function``.

Forward: one program per (batch row, block of BLOCK_D channels) scans over L with the [BLOCK_D, N] state in
registers. When gradients are needed it also stores the state at the start of every CHUNK steps
("checkpoints", [Bt, Dm, ceil(L / CHUNK), N] fp32) so the backward never needs all L states.

Backward: same grid. It walks the chunks from last to first; for each chunk it recomputes the CHUNK states from
the checkpoint into a per-program scratch buffer in global memory (it cannot index registers by a dynamic t),
then runs the adjoint scan backwards over the chunk, reading h_t and h_{t-1} from scratch. Reductions over the
channel dimension (dB, dC) are written as per-channel-block partials and summed in torch, and reductions over
the batch (dA, dD, d(delta_bias)) as per-batch partials: no atomics, so gradients are deterministic.

The returned ``last_state`` is not differentiable here (as in mamba_ssm's ``selective_scan_fn``). Output buffers
come from ``kernels._host`` (NaN-filled under ``PARCAE_KERNEL_POISON=1``, so an unwritten element fails a test).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from parcae_runner.kernels import _host
from parcae_runner.kernels._host import alloc, alloc_like

# steps between stored forward states; the backward recomputes at most CHUNK states per program at a time
CHUNK = 64


@triton.jit
def _softplus(x):
    # torch's softplus (threshold 20); log1p via Kahan's trick since tl has no log1p that the interpreter runs
    # (the clamp and the guarded denominator keep the discarded where-branches free of inf/NaN)
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * e / tl.where(w == 1.0, 1.0, w - 1.0))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _ssm_fwd_kernel(
    u_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    last_ptr,
    ckpt_ptr,
    Dm,
    N,
    L,
    n_chunks,
    chunk,
    s_u_b,
    s_u_d,
    s_u_l,
    s_dt_b,
    s_dt_d,
    s_dt_l,
    s_a_d,
    s_a_n,
    s_b_b,
    s_b_n,
    s_b_l,
    s_c_b,
    s_c_n,
    s_c_l,
    s_z_b,
    s_z_d,
    s_z_l,
    s_o_b,
    s_o_d,
    s_o_l,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < Dm
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]

    # padded lanes get A = 0, u = B = C = 0, so their state stays exactly 0 (no NaN/inf)
    a = tl.load(a_ptr + offs_d[:, None] * s_a_d + offs_n[None, :] * s_a_n, mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        dskip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    u_base = u_ptr + pid_b * s_u_b + offs_d * s_u_d
    dt_base = dt_ptr + pid_b * s_dt_b + offs_d * s_dt_d
    b_base = b_ptr + pid_b * s_b_b + offs_n * s_b_n
    c_base = c_ptr + pid_b * s_c_b + offs_n * s_c_n
    z_base = z_ptr + pid_b * s_z_b + offs_d * s_z_d
    o_base = out_ptr + pid_b * s_o_b + offs_d * s_o_d
    # checkpoints and last state are contiguous [Bt, Dm, n_chunks, N] / [Bt, Dm, N]
    ckpt_base = ckpt_ptr + (pid_b * Dm + offs_d[:, None]) * (n_chunks * N) + offs_n[None, :]

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for t in range(0, L):
        if STORE_CKPT:
            if t % chunk == 0:
                tl.store(ckpt_base + (t // chunk) * N, h, mask=mask_dn)
        u_t = tl.load(u_base + t * s_u_l, mask=mask_d, other=0.0).to(tl.float32)
        dt = tl.load(dt_base + t * s_dt_l, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt)
        b_t = tl.load(b_base + t * s_b_l, mask=mask_n, other=0.0).to(tl.float32)
        c_t = tl.load(c_base + t * s_c_l, mask=mask_n, other=0.0).to(tl.float32)
        h = tl.exp(dt[:, None] * a) * h + (dt * u_t)[:, None] * b_t[None, :]
        y = tl.sum(h * c_t[None, :], axis=1)
        if HAS_D:
            y += dskip * u_t
        if HAS_Z:
            z_t = tl.load(z_base + t * s_z_l, mask=mask_d, other=0.0).to(tl.float32)
            y = y * z_t * tl.sigmoid(z_t)
        tl.store(o_base + t * s_o_l, y.to(out_ptr.dtype.element_ty), mask=mask_d)
    tl.store(last_ptr + (pid_b * Dm + offs_d[:, None]) * N + offs_n[None, :], h, mask=mask_dn)


@triton.jit
def _ssm_bwd_kernel(
    u_ptr,
    dt_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    ckpt_ptr,
    scratch_ptr,
    du_ptr,
    ddt_ptr,
    dz_ptr,
    db_part_ptr,
    dc_part_ptr,
    da_part_ptr,
    dd_part_ptr,
    dbias_part_ptr,
    Bt,
    Dm,
    N,
    L,
    n_chunks,
    chunk,
    s_u_b,
    s_u_d,
    s_u_l,
    s_dt_b,
    s_dt_d,
    s_dt_l,
    s_a_d,
    s_a_n,
    s_b_b,
    s_b_n,
    s_b_l,
    s_c_b,
    s_c_n,
    s_c_l,
    s_z_b,
    s_z_d,
    s_z_l,
    s_g_b,
    s_g_d,
    s_g_l,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_dblocks = tl.num_programs(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < Dm
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]

    a = tl.load(a_ptr + offs_d[:, None] * s_a_d + offs_n[None, :] * s_a_n, mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_D:
        dskip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    u_base = u_ptr + pid_b * s_u_b + offs_d * s_u_d
    dt_base = dt_ptr + pid_b * s_dt_b + offs_d * s_dt_d
    b_base = b_ptr + pid_b * s_b_b + offs_n * s_b_n
    c_base = c_ptr + pid_b * s_c_b + offs_n * s_c_n
    z_base = z_ptr + pid_b * s_z_b + offs_d * s_z_d
    # dout, du, ddelta, dz share one layout (strides s_g_*)
    g_off = pid_b * s_g_b + offs_d * s_g_d
    ckpt_base = ckpt_ptr + (pid_b * Dm + offs_d[:, None]) * (n_chunks * N) + offs_n[None, :]
    # this program's scratch: [chunk + 1, BLOCK_D, BLOCK_N]; slot i + 1 holds h at step t0 + i, slot 0 h before t0
    prog = pid_b * n_dblocks + pid_d
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
    scratch_base = scratch_ptr + prog * (chunk + 1) * (BLOCK_D * BLOCK_N) + tile
    # dB / dC partials: [n_dblocks, Bt, N, L]
    bc_part_off = ((pid_d * Bt + pid_b) * N + offs_n) * L

    zero_d = tl.zeros((BLOCK_D,), dtype=tl.int32)
    zero_n = tl.zeros((BLOCK_N,), dtype=tl.int32)
    gh_next = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # exp(delta_{t+1} A) * dL/dh_{t+1}
    da_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dd_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for cc in range(0, n_chunks):
        t0 = (n_chunks - 1 - cc) * chunk
        # 1) recompute this chunk's states into scratch
        h = tl.load(ckpt_base + (t0 // chunk) * N, mask=mask_dn, other=0.0)
        tl.store(scratch_base, h)
        for i in range(0, chunk):
            t = t0 + i
            # vector comparisons (a scalar bool mask is not accepted everywhere, e.g. by the interpreter)
            m = mask_d & ((zero_d + t) < L)
            m_n = mask_n & ((zero_n + t) < L)
            u_t = tl.load(u_base + t * s_u_l, mask=m, other=0.0).to(tl.float32)
            dt = tl.load(dt_base + t * s_dt_l, mask=m, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            b_t = tl.load(b_base + t * s_b_l, mask=m_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * a) * h + (dt * u_t)[:, None] * b_t[None, :]
            tl.store(scratch_base + (i + 1) * (BLOCK_D * BLOCK_N), h)
        # scratch is written and read back by the same program; the barrier orders it across its threads
        tl.debug_barrier()
        # 2) adjoint scan backwards over the chunk; steps t >= L load zeros and so leave every gradient at 0.
        # h_{t-1} of one step is h_t of the next, so each step loads one tile
        h_t = tl.load(scratch_base + chunk * (BLOCK_D * BLOCK_N))
        for j in range(0, chunk):
            i = chunk - 1 - j
            t = t0 + i
            m = mask_d & ((zero_d + t) < L)
            m_n = mask_n & ((zero_n + t) < L)
            h_prev = tl.load(scratch_base + i * (BLOCK_D * BLOCK_N))
            u_t = tl.load(u_base + t * s_u_l, mask=m, other=0.0).to(tl.float32)
            raw = tl.load(dt_base + t * s_dt_l, mask=m, other=0.0).to(tl.float32)
            if HAS_BIAS:
                raw = raw + bias
            if SOFTPLUS:
                dt = _softplus(raw)
            else:
                dt = raw
            b_t = tl.load(b_base + t * s_b_l, mask=m_n, other=0.0).to(tl.float32)
            c_t = tl.load(c_base + t * s_c_l, mask=m_n, other=0.0).to(tl.float32)
            dout = tl.load(dout_ptr + g_off + t * s_g_l, mask=m, other=0.0).to(tl.float32)
            if HAS_Z:
                z_t = tl.load(z_base + t * s_z_l, mask=m, other=0.0).to(tl.float32)
                y = tl.sum(h_t * c_t[None, :], axis=1)
                if HAS_D:
                    y += dskip * u_t
                sig = tl.sigmoid(z_t)
                dz = dout * y * sig * (1.0 + z_t * (1.0 - sig))
                tl.store(dz_ptr + g_off + t * s_g_l, dz.to(dz_ptr.dtype.element_ty), mask=m)
                gy = dout * z_t * sig
            else:
                gy = dout
            d_a = tl.exp(dt[:, None] * a)
            gh = gh_next + gy[:, None] * c_t[None, :]
            dc = tl.sum(gy[:, None] * h_t, axis=0)
            db = tl.sum(gh * (dt * u_t)[:, None], axis=0)
            tl.store(dc_part_ptr + bc_part_off + t, dc, mask=m_n)
            tl.store(db_part_ptr + bc_part_off + t, db, mask=m_n)
            gh_b = tl.sum(gh * b_t[None, :], axis=1)
            du = dt * gh_b
            if HAS_D:
                du += gy * dskip
                dd_acc += gy * u_t
            tl.store(du_ptr + g_off + t * s_g_l, du.to(du_ptr.dtype.element_ty), mask=m)
            gh_dah = gh * d_a * h_prev
            ddt = tl.sum(gh_dah * a, axis=1) + u_t * gh_b
            da_acc += gh_dah * dt[:, None]
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            tl.store(ddt_ptr + g_off + t * s_g_l, ddt.to(ddt_ptr.dtype.element_ty), mask=m)
            if HAS_BIAS:
                dbias_acc += ddt
            gh_next = gh * d_a
            h_t = h_prev
        # the next chunk overwrites scratch: all reads of this one must be done
        tl.debug_barrier()
    # per-batch partials, summed over Bt by the caller: [Bt, Dm, N] and [Bt, Dm]
    tl.store(da_part_ptr + (pid_b * Dm + offs_d[:, None]) * N + offs_n[None, :], da_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dd_part_ptr + pid_b * Dm + offs_d, dd_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + pid_b * Dm + offs_d, dbias_acc, mask=mask_d)


def _blocks(dm: int, n: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): the whole padded N in one tile, about 512 state elements per program."""
    block_n = triton.next_power_of_2(n)
    block_d = max(4, min(32, 512 // block_n))
    return min(block_d, triton.next_power_of_2(dm)), block_n


def _strides3(t: Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if t is None else tuple(t.stride())  # type: ignore[return-value]


class SelectiveScanFn(torch.autograd.Function):
    """``apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (out, last_state)``, shapes checked first.

    Shapes: u, delta, z: [Bt, Dm, L]; A: [Dm, N]; B, C: [Bt, N, L]; D, delta_bias: [Dm]. Any strides are accepted
    (a transposed view of a [Bt, L, Dm] tensor keeps the per-step loads coalesced; out and the gradients of u, delta,
    z take u's layout). out [Bt, Dm, L] is in u's dtype, last_state [Bt, Dm, N] fp32. Gradients flow to all tensor
    inputs except through ``last_state``.
    """

    @staticmethod
    def forward(
        ctx,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        z: Tensor | None,
        delta_bias: Tensor | None,
        delta_softplus: bool,
    ) -> tuple[Tensor, Tensor]:
        bt, dm, length = u.shape
        n = A.shape[1]
        block_d, block_n = _blocks(dm, n)
        chunk = min(CHUNK, length)
        n_chunks = triton.cdiv(length, chunk)
        store_ckpt = any(ctx.needs_input_grad)
        out = alloc_like(u)
        last = alloc((bt, dm, n), u, torch.float32)
        ckpt = alloc((bt, dm, n_chunks, n), u, torch.float32) if store_ckpt else last
        grid = (bt, triton.cdiv(dm, block_d))
        _ssm_fwd_kernel[grid](
            u,
            delta,
            A,
            B,
            C,
            D if D is not None else u,
            z if z is not None else u,
            delta_bias if delta_bias is not None else u,
            out,
            last,
            ckpt,
            dm,
            n,
            length,
            n_chunks,
            chunk,
            *u.stride(),
            *delta.stride(),
            *A.stride(),
            *B.stride(),
            *C.stride(),
            *_strides3(z),
            *out.stride(),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=delta_softplus,
            STORE_CKPT=store_ckpt,
            BLOCK_D=block_d,
            BLOCK_N=block_n,
        )
        if store_ckpt:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
            ctx.delta_softplus = delta_softplus
            ctx.meta = (block_d, block_n, chunk, n_chunks)
        ctx.mark_non_differentiable(last)
        return out, last

    @staticmethod
    def backward(ctx, dout: Tensor, _dlast: Tensor | None):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        block_d, block_n, chunk, n_chunks = ctx.meta
        bt, dm, length = u.shape
        n = A.shape[1]
        n_dblocks = triton.cdiv(dm, block_d)
        # du / ddelta / dz are written with dout's strides: give dout u's dense layout (an upstream grad can be
        # an expanded stride-0 tensor, e.g. from out.sum())
        layout = torch.empty_like(u, dtype=dout.dtype)
        if dout.stride() != layout.stride():
            dout = layout.copy_(dout)
        f32 = torch.float32
        du = alloc_like(dout, u.dtype)
        ddelta = alloc_like(dout, delta.dtype)
        dz = alloc_like(dout, z.dtype) if z is not None else None
        db_part = alloc((n_dblocks, bt, n, length), u, f32)
        dc_part = alloc((n_dblocks, bt, n, length), u, f32)
        da_part = alloc((bt, dm, n), u, f32)
        dd_part = alloc((bt, dm), u, f32) if D is not None else None
        dbias_part = alloc((bt, dm), u, f32) if delta_bias is not None else None
        scratch = torch.empty((bt * n_dblocks, chunk + 1, block_d, block_n), dtype=f32, device=u.device)
        _ssm_bwd_kernel[(bt, n_dblocks)](
            u,
            delta,
            A,
            B,
            C,
            D if D is not None else u,
            z if z is not None else u,
            delta_bias if delta_bias is not None else u,
            dout,
            ckpt,
            scratch,
            du,
            ddelta,
            dz if dz is not None else du,
            db_part,
            dc_part,
            da_part,
            dd_part if dd_part is not None else da_part,
            dbias_part if dbias_part is not None else da_part,
            bt,
            dm,
            n,
            length,
            n_chunks,
            chunk,
            *u.stride(),
            *delta.stride(),
            *A.stride(),
            *B.stride(),
            *C.stride(),
            *_strides3(z),
            *dout.stride(),
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.delta_softplus,
            BLOCK_D=block_d,
            BLOCK_N=block_n,
        )
        dA = da_part.sum(0).to(A.dtype)
        dB = db_part.sum(0).to(B.dtype)
        dC = dc_part.sum(0).to(C.dtype)
        dD = dd_part.sum(0).to(D.dtype) if D is not None and dd_part is not None else None
        dbias = dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None and dbias_part is not None else None
        return du, ddelta, dA, dB, dC, dD, dz, dbias, None


def check_interpretable(x: Tensor) -> None:
    """CPU tensors need this module's kernels built by the interpreter (TRITON_INTERPRET=1 when it was imported)."""
    _host.check_interpretable(x, _ssm_fwd_kernel, __name__)
