"""RWKV-4 WKV: the reference against the equations and HF, the Triton kernel (interpreted) against the reference."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from parcae_runner.kernels import wkv4 as wkv4_pkg
from parcae_runner.kernels.wkv4 import initial_wkv4_state, wkv4, wkv4_reference

GRAD_NAMES = ("time_decay", "time_first", "key", "value")


@dataclass(frozen=True)
class Case:
    b: int
    t: int
    c: int
    with_state: bool = False
    dtype: torch.dtype = torch.float32  # of key and value (time_decay / time_first stay fp32 params)
    key_scale: float = 1.0  # large keys overflow exp() unless the kernel keeps its max-stabilised form
    strided: bool = False  # key / value as slices of a wider tensor

    def __str__(self) -> str:
        return (
            f"B{self.b}-T{self.t}-C{self.c}{'-state' if self.with_state else ''}-{str(self.dtype)[6:]}"
            + (f"-k{self.key_scale:g}" if self.key_scale != 1 else "")
            + ("-strided" if self.strided else "")
        )


def make_inputs(case: Case, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, t, c = case.b, case.t, case.c

    def kv(scale: float) -> torch.Tensor:
        if case.strided:
            return (torch.randn(b, t, 2 * c, generator=g) * scale).to(case.dtype)[..., 1::2]
        return (torch.randn(b, t, c, generator=g) * scale).to(case.dtype)

    inp = {
        "time_decay": torch.randn(c, generator=g) - 1.0,
        "time_first": torch.randn(c, generator=g) * 0.5,
        "key": kv(case.key_scale),
        "value": kv(1.0),
        "state": None,
    }
    if case.with_state:
        # a state reached by running the reference on a prefix (so num/den/max are mutually consistent)
        prefix_k = torch.randn(b, 7, c, generator=g)
        prefix_v = torch.randn(b, 7, c, generator=g)
        _, inp["state"] = wkv4_reference(inp["time_decay"], inp["time_first"], prefix_k, prefix_v, return_state=True)
    return inp


def naive_wkv(td, tf, k, v, state=None):
    """The unstabilised equations in float64: num/den are the real sums, exp(max) folded in."""
    td, tf, k, v = (x.double() for x in (td, tf, k, v))
    w = -torch.exp(td)
    b, t, c = k.shape
    if state is None:
        num = torch.zeros(b, c, dtype=torch.float64)
        den = torch.zeros(b, c, dtype=torch.float64)
    else:
        num = state[0].double() * torch.exp(state[2].double())
        den = state[1].double() * torch.exp(state[2].double())
    ys = []
    for i in range(t):
        bonus = torch.exp(tf + k[:, i])
        ys.append((num + bonus * v[:, i]) / (den + bonus))
        num = torch.exp(w) * num + torch.exp(k[:, i]) * v[:, i]
        den = torch.exp(w) * den + torch.exp(k[:, i])
    return torch.stack(ys, 1), num, den


@pytest.mark.parametrize("case", [Case(2, 1, 3), Case(2, 9, 5), Case(1, 6, 4, with_state=True)], ids=str)
def test_reference_matches_equations(case: Case, rel, tol) -> None:
    inp = make_inputs(case)
    leaves = [inp[k].double().requires_grad_() for k in GRAD_NAMES]
    out, (num, den, mx) = wkv4_reference(*leaves, state=inp["state"], return_state=True)
    want, want_num, want_den = naive_wkv(*leaves, state=inp["state"])
    assert rel(out, want) < tol[torch.float32]
    assert rel(num * torch.exp(mx.double()), want_num) < tol[torch.float32]
    assert rel(den * torch.exp(mx.double()), want_den) < tol[torch.float32]
    g = torch.randn_like(want)
    got = torch.autograd.grad(out, leaves, g, retain_graph=True, allow_unused=True, materialize_grads=True)
    exp = torch.autograd.grad(want, leaves, g, allow_unused=True, materialize_grads=True)
    for name, a, b in zip(GRAD_NAMES, got, exp, strict=True):
        assert rel(a, b) < 1e-4, name


def test_reference_matches_transformers(rel) -> None:
    modeling_rwkv = pytest.importorskip("transformers.models.rwkv.modeling_rwkv")
    inp = make_inputs(Case(2, 11, 6, with_state=True, key_scale=5.0))
    args = [inp[k] for k in GRAD_NAMES]
    out, state = wkv4_reference(*args, state=inp["state"], return_state=True)
    hf_out, hf_state = modeling_rwkv.rwkv_linear_attention_cpu(*args, state=list(inp["state"]), return_state=True)
    assert torch.equal(out, hf_out)
    for a, b in zip(state, hf_state, strict=True):
        assert torch.equal(a, b)
    out0, state0 = wkv4_reference(*args, return_state=True)
    hf_out0, hf_state0 = modeling_rwkv.rwkv_linear_attention_cpu(*args, return_state=True)
    assert torch.equal(out0, hf_out0) and all(torch.equal(a, b) for a, b in zip(state0, hf_state0, strict=True))


def test_initial_state_convention() -> None:
    num, den, mx = initial_wkv4_state(torch.zeros(2, 3, 4))
    assert num.shape == den.shape == mx.shape == (2, 4) and num.dtype == torch.float32
    assert (num == 0).all() and (den == 0).all() and (mx == -1e38).all()


TRITON_CASES = [
    Case(2, 1, 5),  # T = 1
    Case(2, 1, 5, with_state=True),
    Case(2, 63, 40, strided=True),  # two channel blocks, the second partial; strided key/value
    Case(1, 200, 33, with_state=True),
    Case(1, 50, 8, key_scale=30.0),  # exp(k) would overflow fp32 without the max-stabilised form
    Case(2, 63, 24, dtype=torch.bfloat16),  # the interpreter runs bf16 loads/stores
]


@pytest.mark.parametrize("case", TRITON_CASES, ids=str)
def test_triton_matches_reference(case: Case, rel, tol) -> None:
    pytest.importorskip("triton")
    inp = make_inputs(case, seed=1)
    leaves = [inp[k].detach().requires_grad_() for k in GRAD_NAMES]
    results = {}
    g = None
    for impl in ("reference", "triton"):
        out, state = wkv4(*leaves, state=inp["state"], return_state=True, impl=impl)
        if g is None:
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out.dtype)
        # T = 1 without state: time_decay only feeds the final state, so its gradient is 0 (unused in the graph)
        grads = torch.autograd.grad(out, leaves, g, allow_unused=True, materialize_grads=True)
        results[impl] = (out, state, grads)
    (out_r, state_r, grads_r), (out_t, state_t, grads_t) = results["reference"], results["triton"]
    assert out_t.dtype == case.dtype and out_t.shape == (case.b, case.t, case.c)
    errors = {"out": rel(out_t, out_r)}
    for name, a, b in zip(("num", "den", "max"), state_t, state_r, strict=True):
        assert a.dtype == torch.float32 and a.shape == (case.b, case.c)
        errors[name] = rel(a, b)
    for name, leaf, a, b in zip(GRAD_NAMES, leaves, grads_t, grads_r, strict=True):
        assert a.dtype == leaf.dtype and a.shape == leaf.shape, name
        errors["d" + name] = rel(a, b)
    # max exponents are sums / maxima of the same fp32 numbers: (nearly) exact
    limits = {"out": tol[case.dtype], "num": tol[torch.float32], "den": tol[torch.float32], "max": 1e-6}
    limits |= {"d" + n: tol[leaf.dtype] for n, leaf in zip(GRAD_NAMES, leaves, strict=True)}
    bad = {k: e for k, e in errors.items() if not e <= limits[k]}
    assert not bad, f"relative errors over tolerance: {bad} (all: {errors})"


def test_triton_state_continuation(rel) -> None:
    """Running T in two pieces with the returned state equals one run (the state is a plain value, no graph)."""
    pytest.importorskip("triton")
    inp = make_inputs(Case(2, 20, 6), seed=4)
    td, tf, k, v = (inp[n] for n in GRAD_NAMES)
    full, full_state = wkv4(td, tf, k, v, return_state=True, impl="triton")
    first, state = wkv4(td, tf, k[:, :13], v[:, :13], return_state=True, impl="triton")
    assert not any(s.requires_grad for s in state)
    second, last_state = wkv4(td, tf, k[:, 13:], v[:, 13:], state=state, return_state=True, impl="triton")
    assert rel(torch.cat([first, second], 1), full) < 2e-5
    for a, b in zip(last_state, full_state, strict=True):
        assert rel(a, b) < 2e-5


def test_dispatch_reference_and_auto_on_cpu(monkeypatch) -> None:
    inp = make_inputs(Case(1, 4, 3))
    args = [inp[k] for k in GRAD_NAMES]
    calls = []

    def spy(*a, **kw):
        calls.append(1)
        return wkv4_reference(*a, **kw)

    monkeypatch.setattr(wkv4_pkg, "wkv4_reference", spy)
    want = wkv4_reference(*args)
    for impl in ("reference", "auto"):
        out = wkv4(*args, impl=impl)
        assert isinstance(out, torch.Tensor) and torch.equal(out, want)
    assert len(calls) == 2  # "auto" on CPU tensors went to the reference
    out, state = wkv4(*args, return_state=True)
    assert len(state) == 3


def test_dispatch_bad_impl_and_triton_without_interpreter(monkeypatch) -> None:
    args = [make_inputs(Case(1, 4, 3))[k] for k in GRAD_NAMES]
    with pytest.raises(ValueError, match=r"'cuda'.*'auto', 'triton', 'reference'"):
        wkv4(*args, impl="cuda")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        wkv4(*args, impl="triton")


def test_shape_errors() -> None:
    td, tf, k, v = (make_inputs(Case(2, 4, 3))[n] for n in GRAD_NAMES)
    with pytest.raises(ValueError, match="value must"):
        wkv4(td, tf, k, v[:, :3])
    with pytest.raises(ValueError, match="time_first must"):
        wkv4(td, tf[:2], k, v)
    with pytest.raises(ValueError, match="state"):
        wkv4(td, tf, k, v, state=(torch.zeros(2, 3), torch.zeros(2, 3)))


def test_poisoning_is_on() -> None:
    pytest.importorskip("triton")
    from parcae_runner.kernels._host import alloc

    assert torch.isnan(alloc((3,), torch.zeros(1))).all()
