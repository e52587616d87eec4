"""What runs on the host around every kernel op: picking the implementation, shape checks, output buffers.

Each op (``kernels/<op>/``) has a pure-torch ``reference.py``, a ``triton.py`` and a dispatcher in its ``__init__``
that asks :func:`resolve_impl` which of the two computes a call. The ``@triton.jit`` bodies stay with their op.

Set ``PARCAE_KERNEL_POISON=1`` to allocate every kernel output with NaN instead of ``torch.empty`` (:func:`alloc`,
:func:`alloc_like`), so an element a kernel forgets to write shows up in tests.
"""

from __future__ import annotations

import os
from functools import cache

import torch
from torch import Tensor

IMPLS = ("auto", "triton", "reference")


@cache
def triton_available() -> bool:
    """Whether triton imports (asked once: the dispatchers ask on every call)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_impl(op: str, impl: str, x: Tensor) -> str:
    """Which implementation, "triton" or "reference", computes ``op`` on input ``x`` for ``impl`` (one of IMPLS).

    "auto" is Triton when ``x`` is on CUDA and triton imports, else the reference. Raises ValueError for an unknown
    ``impl``, RuntimeError for "triton" where it cannot run (CPU tensors without TRITON_INTERPRET=1, no triton).
    """
    if impl not in IMPLS:
        raise ValueError(f"{op}: unknown impl={impl!r}; allowed: {', '.join(map(repr, IMPLS))}")
    if impl == "auto":
        return "triton" if (x.is_cuda and triton_available()) else "reference"
    if impl == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"{op}(impl='triton') needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is imported "
            "to run the kernels on CPU (slow, for tests); use impl='reference' or 'auto' on CPU"
        )
    if impl == "triton" and not triton_available():
        raise RuntimeError(f"{op}(impl='triton'): triton is not installed")
    return impl


def check_interpretable(x: Tensor, kernel: object, module: str) -> None:
    """CPU tensors need ``kernel`` built by the interpreter: TRITON_INTERPRET=1 set when ``module`` was imported."""
    from triton.runtime.interpreter import InterpretedFunction

    if not x.is_cuda and not isinstance(kernel, InterpretedFunction):
        raise RuntimeError(
            f"{module} was imported without TRITON_INTERPRET=1, so its kernels only run on CUDA tensors; set "
            "TRITON_INTERPRET=1 before the first import to run them on CPU"
        )


def check_sequence(name: str, x: Tensor, dims: tuple[str, str, str], seq: int) -> tuple[int, int, int]:
    """The sizes of ``x`` after checking it is 3-d, laid out as ``dims`` (e.g. ("B", "T", "C")), with a sequence of
    at least one step on axis ``seq``; ValueError otherwise."""
    if x.dim() != 3:
        raise ValueError(f"{name} must be [{', '.join(dims)}], got shape {tuple(x.shape)}")
    if x.shape[seq] < 1:
        raise ValueError(f"the sequence length {dims[seq]} must be >= 1")
    return x.shape[0], x.shape[1], x.shape[2]


def check_like(name: str, t: Tensor | None, like_name: str, like: Tensor) -> None:
    """ValueError unless ``t`` (None passes) has the shape of ``like``."""
    if t is not None and t.shape != like.shape:
        raise ValueError(f"{name} must have {like_name}'s shape {tuple(like.shape)}, got {tuple(t.shape)}")


def check_sizes(name: str, t: Tensor | None, **sizes: int) -> None:
    """ValueError unless ``t`` (None passes) has the sizes named in order, e.g. ``check_sizes("B", B, Bt=2, N=16)``."""
    if t is not None and tuple(t.shape) != tuple(sizes.values()):
        want = ", ".join(f"{dim}={size}" for dim, size in sizes.items())
        raise ValueError(f"{name} must be [{want}], got {tuple(t.shape)}")


def poison() -> bool:
    return os.environ.get("PARCAE_KERNEL_POISON") == "1"


def alloc(shape: tuple[int, ...] | torch.Size, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Contiguous output buffer on ``like``'s device; NaN-filled (instead of uninitialised) when poisoning is on."""
    dtype = dtype or like.dtype
    if poison():
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


def alloc_like(t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Buffer with t's layout (keeps a transposed [Bt, L, Dm] memory order coalesced); NaN when poisoning."""
    out = torch.empty_like(t, dtype=dtype or t.dtype)
    if poison():
        out.fill_(float("nan"))
    return out


@torch.compiler.disable
def apply_eagerly(fn: type[torch.autograd.Function], *args):
    """``fn.apply(*args)`` outside any ``torch.compile`` graph (``train.compile``): the compiled model breaks its
    graph around a Triton kernel and runs it as is, forward and backward, rather than tracing into it."""
    return fn.apply(*args)
