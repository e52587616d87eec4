"""Selective scan: the reference against the equations, the Triton kernel (interpreted) against the reference."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from parcae_runner.kernels import selective_scan as ss_pkg
from parcae_runner.kernels.selective_scan import selective_scan, selective_scan_reference

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@dataclass(frozen=True)
class Case:
    bt: int
    dm: int
    n: int
    length: int
    has_d: bool = True
    has_z: bool = True
    has_bias: bool = True
    softplus: bool = True
    dtype: torch.dtype = torch.float32  # of u, delta, B, C, z (A, D, delta_bias stay fp32, as Mamba's params)
    transposed: bool = False  # u, delta, z, B, C as transposed views of [Bt, L, ...] tensors, as in a Mamba block
    extreme_delta: bool = False  # some delta + bias > 20 (softplus's linear branch) and some < -30 (dt ~ 1e-13)

    def __str__(self) -> str:
        flags = [
            f for f in ("has_d", "has_z", "has_bias", "softplus", "transposed", "extreme_delta") if getattr(self, f)
        ]
        return f"Bt{self.bt}-Dm{self.dm}-N{self.n}-L{self.length}-{str(self.dtype)[6:]}-" + "+".join(flags)


def make_inputs(case: Case, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """Mamba-like magnitudes: softplus(delta + bias) around 0.05-0.5, A = -(0.5 .. N + 0.5)."""
    g = torch.Generator().manual_seed(seed)
    bt, dm, n, length = case.bt, case.dm, case.n, case.length

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    def act(shape: tuple[int, int, int], scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        if case.transposed:
            x = (rnd(shape[0], shape[2], shape[1]) * scale + shift).to(case.dtype).transpose(1, 2)
        else:
            x = (rnd(*shape) * scale + shift).to(case.dtype)
        return x

    def bc() -> torch.Tensor:
        # a Mamba block slices B and C out of x_proj's [Bt, L, ...] output and transposes them
        if case.transposed:
            return rnd(bt, length, 2 * n)[..., n:].to(case.dtype).transpose(1, 2)
        return rnd(bt, n, length).to(case.dtype)

    if case.softplus:
        delta = act((bt, dm, length), 0.5)
    else:
        # no softplus: delta is used as is and must be positive
        delta = act((bt, dm, length), 0.0) + (torch.rand(bt, dm, length, generator=g) * 0.5 + 0.01).to(case.dtype)
    if case.extreme_delta:
        delta = delta.clone()
        delta[:, 0::3] += 25.0
        delta[:, 1::3] -= 30.0
    return {
        "u": act((bt, dm, length)),
        "delta": delta,
        "A": -(torch.rand(dm, n, generator=g) * n + 0.5),
        "B": bc(),
        "C": bc(),
        "D": rnd(dm) if case.has_d else None,
        "z": act((bt, dm, length)) if case.has_z else None,
        "delta_bias": rnd(dm) * 0.5 - 1.5 if case.has_bias else None,
    }


def naive_scan(inp: dict[str, torch.Tensor | None], softplus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The equations, step by step in float64, with exp(delta * A) materialised per step."""
    x = {k: (v.detach().double().requires_grad_(v.requires_grad) if v is not None else None) for k, v in inp.items()}
    return _naive(x, softplus), x  # type: ignore[return-value]


def _naive(x: dict[str, torch.Tensor | None], softplus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    u, delta, a, b, c = x["u"], x["delta"], x["A"], x["B"], x["C"]
    dt = delta if x["delta_bias"] is None else delta + x["delta_bias"][:, None]
    if softplus:
        dt = torch.log1p(torch.exp(dt))
    bt, dm, length = u.shape
    h = torch.zeros(bt, dm, a.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, :, t, None] * a[None])  # [Bt, Dm, N]
        drive = dt[:, :, t, None] * b[:, None, :, t] * u[:, :, t, None]
        h = decay * h + drive
        y = torch.einsum("bdn,bn->bd", h, c[:, :, t])
        if x["D"] is not None:
            y = y + x["D"] * u[:, :, t]
        if x["z"] is not None:
            y = y * (x["z"][:, :, t] * torch.sigmoid(x["z"][:, :, t]))
        ys.append(y)
    return torch.stack(ys, -1), h


def _grad_inputs(inp: dict[str, torch.Tensor | None]) -> list[str]:
    return [k for k in NAMES if inp[k] is not None]


@pytest.mark.parametrize(
    "case",
    [
        Case(2, 3, 4, 1),
        Case(2, 5, 3, 9, softplus=False, has_bias=False),
        Case(1, 4, 6, 12, has_d=False, has_z=False),
        Case(1, 6, 2, 5, extreme_delta=True),
    ],
    ids=str,
)
def test_reference_matches_equations(case: Case, rel, tol) -> None:
    inp = {k: (v.requires_grad_() if v is not None else None) for k, v in make_inputs(case).items()}
    out, last = selective_scan_reference(*inp.values(), delta_softplus=case.softplus, return_last_state=True)
    (want, want_last), x64 = naive_scan(inp, case.softplus)
    assert out.dtype == torch.float32 and last.dtype == torch.float32 and last.shape == (case.bt, case.dm, case.n)
    assert rel(out, want) < tol[torch.float32]
    assert rel(last, want_last) < tol[torch.float32]
    g = torch.randn_like(out)
    names = _grad_inputs(inp)
    got = torch.autograd.grad(out, [inp[k] for k in names], g)
    exp = torch.autograd.grad(want, [x64[k] for k in names], g.double())
    for k, a, b in zip(names, got, exp, strict=True):
        assert rel(a, b) < 1e-4, k  # gradients sum over L and N: looser than elementwise fp32 rounding


TRITON_CASES = [
    Case(2, 5, 3, 1),  # L = 1
    Case(1, 6, 3, 7, extreme_delta=True),  # both softplus branches, dt from 1e-13 to 25
    Case(2, 40, 16, 63, transposed=True),  # two channel blocks (second partial), strided inputs
    Case(1, 6, 4, 200),  # L > CHUNK and not a multiple of it
    Case(1, 40, 8, 130, has_z=False),  # several channel blocks and several chunks together
    Case(1, 8, 4, 70, has_d=False, has_z=False, has_bias=False, softplus=False),
    Case(1, 4, 64, 9),  # N = 64
    Case(1, 8, 16, 63, dtype=torch.bfloat16),  # the interpreter runs bf16 loads/stores
]


@pytest.mark.parametrize("case", TRITON_CASES, ids=str)
def test_triton_matches_reference(case: Case, rel, tol) -> None:
    pytest.importorskip("triton")
    inp = {k: (v.requires_grad_() if v is not None else None) for k, v in make_inputs(case, seed=1).items()}
    names = _grad_inputs(inp)
    results = {}
    g = None
    for impl in ("reference", "triton"):
        out, last = selective_scan(*inp.values(), delta_softplus=case.softplus, return_last_state=True, impl=impl)
        if g is None:
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out.dtype)
        grads = torch.autograd.grad(out, [inp[k] for k in names], g)
        results[impl] = (out, last, grads)
    (out_r, last_r, grads_r), (out_t, last_t, grads_t) = results["reference"], results["triton"]
    assert out_t.dtype == case.dtype and out_t.shape == (case.bt, case.dm, case.length)
    assert last_t.dtype == torch.float32
    errors = {"out": rel(out_t, out_r), "last_state": rel(last_t, last_r)}
    for k, a, b in zip(names, grads_t, grads_r, strict=True):
        assert a.dtype == inp[k].dtype and a.shape == inp[k].shape, k
        errors["d" + k] = rel(a, b)
    limits = {"out": tol[case.dtype], "last_state": tol[torch.float32]}
    limits |= {"d" + k: tol[inp[k].dtype] for k in names}
    bad = {k: e for k, e in errors.items() if not e < limits[k]}
    assert not bad, f"relative errors over tolerance: {bad} (all: {errors})"


def test_triton_no_grad_and_expanded_upstream_grad(rel) -> None:
    """Forward without grad (no checkpoints stored), and a stride-0 upstream gradient from out.sum()."""
    pytest.importorskip("triton")
    case = Case(1, 6, 4, 5)
    inp = make_inputs(case, seed=3)
    with torch.no_grad():
        out = selective_scan(*inp.values(), delta_softplus=True, impl="triton")
    assert isinstance(out, torch.Tensor)
    assert rel(out, selective_scan_reference(*inp.values(), delta_softplus=True)) < 2e-5
    u = inp["u"].requires_grad_()
    grads = [
        torch.autograd.grad(selective_scan(*inp.values(), delta_softplus=True, impl=i).sum(), u)[0]
        for i in ("reference", "triton")
    ]
    assert rel(grads[1], grads[0]) < 2e-5


def test_dispatch_reference_and_auto_on_cpu(monkeypatch) -> None:
    inp = make_inputs(Case(1, 3, 2, 4))
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return selective_scan_reference(*args, **kwargs)

    monkeypatch.setattr(ss_pkg, "selective_scan_reference", spy)
    want = selective_scan_reference(*inp.values())
    for impl in ("reference", "auto"):
        out = selective_scan(*inp.values(), impl=impl)
        assert torch.equal(out, want)
    assert len(calls) == 2  # "auto" on CPU tensors went to the reference
    out, last = selective_scan(*inp.values(), return_last_state=True, impl="auto")
    assert last.shape == (1, 3, 2)


def test_dispatch_bad_impl_and_triton_without_interpreter(monkeypatch) -> None:
    inp = make_inputs(Case(1, 3, 2, 4))
    with pytest.raises(ValueError, match=r"'cuda'.*'auto', 'triton', 'reference'"):
        selective_scan(*inp.values(), impl="cuda")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        selective_scan(*inp.values(), impl="triton")


def test_shape_errors() -> None:
    inp = make_inputs(Case(2, 3, 2, 4))
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**(inp | {"B": inp["B"][:, :, :3]}))
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**(inp | {"A": inp["A"][:2]}))


def test_poisoning_is_on() -> None:
    """The wrappers' output buffers are NaN in this test session, so an unwritten element cannot pass."""
    pytest.importorskip("triton")
    from parcae_runner.kernels._host import alloc, alloc_like

    assert torch.isnan(alloc((3,), torch.zeros(1))).all()
    assert torch.isnan(alloc_like(torch.zeros(2, 3).t())).all()
