"""Kernel-test setup: run Triton kernels on CPU through the interpreter, poison kernel outputs, compare helper.

The environment is set at import time, before any test module imports triton: ``triton.jit`` picks the
interpreter when it decorates a kernel, so TRITON_INTERPRET must already be set then.
"""

from __future__ import annotations

import os

# Triton kernels on CPU tensors only run under the interpreter (slow: tests use small shapes)
os.environ["TRITON_INTERPRET"] = "1"
# kernel wrappers allocate outputs with NaN instead of torch.empty: an element a kernel never writes fails a test
os.environ["PARCAE_KERNEL_POISON"] = "1"

from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# relative-error tolerance per dtype of the compared tensor: fp32 math in both paths differs only by rounding
# order; bf16 results are rounded to bf16 (2^-8 relative) after fp32 math, so they may differ by one bf16 ulp
REL_TOL = {torch.float32: 2e-5, torch.float64: 1e-9, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(max |expected|, 1e-10); inf when actual has a NaN/inf.

    The 1e-10 floor keeps an exactly-zero gradient (e.g. d time_first at T = 1) comparable with a float64 one
    that is zero up to rounding (~1e-17) instead of dividing rounding noise by itself.
    """
    a = actual.detach().double()
    e = expected.detach().double()
    assert a.shape == e.shape, f"shape {tuple(a.shape)} != {tuple(e.shape)}"
    if not torch.isfinite(a).all():
        return float("inf")
    diff = (a - e).abs().max().item() if a.numel() else 0.0
    scale = e.abs().max().item() if e.numel() else 0.0
    return diff / max(scale, 1e-10)


@pytest.fixture
def rel() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The relative-error helper, as a fixture so test modules need not import conftest."""
    return rel_err


@pytest.fixture
def tol() -> dict[torch.dtype, float]:
    return REL_TOL
