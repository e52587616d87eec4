"""RWKV-7 WKV: the reference against a float64 loop of the equations, the Triton kernel (interpreted) against the
reference on outputs, final states and every gradient."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from parcae_runner.kernels import wkv7 as wkv7_pkg
from parcae_runner.kernels.wkv7 import initial_wkv7_state, wkv7, wkv7_reference

NAMES = ("r", "w", "k", "v", "a", "b", "state")


@dataclass(frozen=True)
class Case:
    b: int
    t: int
    h: int
    n: int
    with_state: bool = False
    dtype: torch.dtype = torch.float32

    def __str__(self) -> str:
        state = "-state" if self.with_state else ""
        return f"B{self.b}-T{self.t}-H{self.h}-N{self.n}{state}-{str(self.dtype)[6:]}"


def make_inputs(case: Case, seed: int = 0) -> list[torch.Tensor | None]:
    """RWKV-7's regime: log decay in (-e^-0.5, 0), a = -kk, b = kk * iclr with kk unit-norm per head."""
    g = torch.Generator().manual_seed(seed)
    shape = (case.b, case.t, case.h, case.n)

    def rnd(scale: float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=g) * scale

    w = -0.606531 * torch.sigmoid(rnd(2.0))
    kk = F.normalize(rnd(), dim=-1)
    iclr = torch.rand(shape, generator=g)
    xs = [rnd(), w, rnd(), rnd(), -kk, kk * iclr]
    xs = [x.to(case.dtype) for x in xs]
    state = torch.randn(case.b, case.h, case.n, case.n, generator=g) if case.with_state else None
    return [*xs, state]


def naive_wkv7(r, w, k, v, a, b, state=None):
    """The equations in float64, one head at a time as matrices: S <- S (diag(e^w) + a b^T) + v k^T, y = S r."""
    r, w, k, v, a, b = (x.double() for x in (r, w, k, v, a, b))
    bsz, t, h, n = r.shape
    ys = torch.zeros(bsz, t, h, n, dtype=torch.float64)
    finals = torch.zeros(bsz, h, n, n, dtype=torch.float64)
    for i in range(bsz):
        for j in range(h):
            s = torch.zeros(n, n, dtype=torch.float64) if state is None else state[i, j].double()
            for u in range(t):
                transition = torch.diag(torch.exp(w[i, u, j])) + torch.outer(a[i, u, j], b[i, u, j])
                s = s @ transition + torch.outer(v[i, u, j], k[i, u, j])
                ys[i, u, j] = s @ r[i, u, j]
            finals[i, j] = s
    return ys, finals


@pytest.mark.parametrize("case", [Case(2, 1, 1, 4), Case(1, 9, 2, 5), Case(2, 7, 2, 4, with_state=True)], ids=str)
def test_reference_matches_equations(case: Case, rel) -> None:
    inp = make_inputs(case)
    leaves = [x.double().requires_grad_() if x is not None else None for x in inp]
    y, final = wkv7_reference(*leaves[:6], state=leaves[6], return_state=True)
    want_y, want_final = naive_wkv7(*leaves[:6], state=leaves[6])
    assert rel(y, want_y) < 1e-5 and rel(final, want_final) < 1e-5
    used = [x for x in leaves if x is not None]
    gy, gs = torch.randn_like(want_y), torch.randn_like(want_final)
    got = torch.autograd.grad((y * gy).sum() + (final * gs).sum(), used)
    exp = torch.autograd.grad((want_y * gy).sum() + (want_final * gs).sum(), used)
    for name, x, e in zip(NAMES, got, exp, strict=False):
        assert rel(x, e) < 1e-4, name


def test_initial_state_convention() -> None:
    s = initial_wkv7_state(torch.zeros(2, 3, 4, 8))
    assert s.shape == (2, 4, 8, 8) and s.dtype == torch.float32 and (s == 0).all()


TRITON_CASES = [
    Case(2, 1, 2, 4),  # T = 1
    Case(1, 17, 2, 8, with_state=True),  # one step past a checkpoint chunk (16)
    Case(2, 35, 1, 6),  # N not a power of two: masked lanes
    Case(1, 33, 2, 16, with_state=True),
    Case(1, 19, 2, 8, dtype=torch.bfloat16),
    Case(1, 21, 1, 8, with_state=True, dtype=torch.bfloat16),
]


@pytest.mark.parametrize("forward", ["chunk", "step"])
@pytest.mark.parametrize("case", TRITON_CASES, ids=str)
def test_triton_matches_reference(case: Case, forward: str, rel, tol) -> None:
    pytest.importorskip("triton")
    inp = make_inputs(case, seed=1)
    leaves = [x.detach().requires_grad_() if x is not None else None for x in inp]
    used = [x for x in leaves if x is not None]
    results = {}
    for impl in ("reference", "triton"):
        y, final = wkv7(*leaves[:6], state=leaves[6], return_state=True, impl=impl, forward=forward)
        g = torch.Generator().manual_seed(2)
        gy = torch.randn(y.shape, generator=g).to(y.dtype)
        gs = torch.randn(final.shape, generator=g)
        grads = torch.autograd.grad((y.float() * gy.float()).sum() + (final * gs).sum(), used)
        results[impl] = (y, final, grads)
    (y_r, s_r, g_r), (y_t, s_t, g_t) = results["reference"], results["triton"]
    assert y_t.dtype == case.dtype and y_t.shape == (case.b, case.t, case.h, case.n)
    assert s_t.dtype == torch.float32 and s_t.shape == (case.b, case.h, case.n, case.n)
    # bf16 inputs: both paths compute in fp32 from the same bf16 values; y and gradients are rounded to bf16
    errors = {"y": rel(y_t, y_r), "state": rel(s_t, s_r)}
    limits = {"y": tol[case.dtype], "state": 1e-4}
    for name, leaf, a, b in zip(NAMES, used, g_t, g_r, strict=False):
        assert a.dtype == leaf.dtype and a.shape == leaf.shape, name
        errors["d" + name] = rel(a, b)
        limits["d" + name] = max(tol[leaf.dtype], 1e-4)
    bad = {k: e for k, e in errors.items() if not e <= limits[k]}
    assert not bad, f"relative errors over tolerance: {bad} (all: {errors})"


def test_auto_forward_falls_back_to_steps_for_strong_decay(rel) -> None:
    """A log decay below -5 would overflow the chunk's exp(-cumsum(w)) scaling: "auto" runs the per-step kernel."""
    pytest.importorskip("triton")
    from parcae_runner.kernels.wkv7.triton import use_chunked_forward

    r, w, k, v, a, b, _ = make_inputs(Case(1, 20, 1, 4), seed=5)
    assert use_chunked_forward(w, "auto")
    w = w.clone()
    w[0, 3] = -30.0  # exp(30 * 16) is inf in fp32
    assert not use_chunked_forward(w, "auto")
    want = wkv7(r, w, k, v, a, b, impl="reference")
    assert rel(wkv7(r, w, k, v, a, b, impl="triton"), want) < 2e-5
    with pytest.raises(ValueError, match="forward='fast'"):
        wkv7(r, w, k, v, a, b, impl="triton", forward="fast")


def test_triton_state_continuation(rel) -> None:
    """Two pieces with the returned state equal one run."""
    pytest.importorskip("triton")
    r, w, k, v, a, b, _ = make_inputs(Case(1, 20, 2, 4), seed=4)
    full, full_state = wkv7(r, w, k, v, a, b, return_state=True, impl="triton")
    first, state = wkv7(*(x[:, :13] for x in (r, w, k, v, a, b)), return_state=True, impl="triton")
    second, last = wkv7(*(x[:, 13:] for x in (r, w, k, v, a, b)), state=state, return_state=True, impl="triton")
    assert rel(torch.cat([first, second], 1), full) < 2e-5 and rel(last, full_state) < 2e-5


def test_dispatch_reference_and_auto_on_cpu(monkeypatch) -> None:
    args = make_inputs(Case(1, 4, 1, 4))[:6]
    calls = []

    def spy(*a, **kw):
        calls.append(1)
        return wkv7_reference(*a, **kw)

    monkeypatch.setattr(wkv7_pkg, "wkv7_reference", spy)
    want = wkv7_reference(*args)
    for impl in ("reference", "auto"):
        assert torch.equal(wkv7(*args, impl=impl), want)
    assert len(calls) == 2


def test_dispatch_errors(monkeypatch) -> None:
    args = make_inputs(Case(1, 4, 1, 4))[:6]
    with pytest.raises(ValueError, match=r"'cuda'.*'auto', 'triton', 'reference'"):
        wkv7(*args, impl="cuda")
    with pytest.raises(ValueError, match="v must"):
        wkv7(*args[:3], args[3][:, :2], *args[4:])
    with pytest.raises(ValueError, match="state must"):
        wkv7(*args, state=torch.zeros(1, 1, 4, 3))
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        wkv7(*args, impl="triton")
