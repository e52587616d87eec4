"""Forward and forward+backward time of the sequence-mixing kernels, per implementation.

    python bench/kernels.py --out bench/out/kernels.json

Kernels and implementations:
  selective_scan (Mamba-1): reference, triton (CUDA), mamba_ssm's selective_scan_fn (if importable)
  wkv4 (RWKV-4):            reference, triton (CUDA), fla's fused_recurrent_rwkv4 (if importable)

On CUDA the shapes are training-like (selective_scan: Bt=8, Dm=1536, N=16, L=1024; wkv4: B=8, T=1024, C=768)
and every implementation runs; on CPU only the reference runs, at a smaller shape recorded in the JSON.
Each timing is the median of ``--repeats`` runs after ``--warmup`` runs, with torch.cuda.synchronize around
each. Every implementation's output and gradients are also compared with the reference's on the same inputs
(max |x - ref| / max |ref|), so a GPU run doubles as a correctness check at full size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import write_report

from parcae_runner.kernels.selective_scan import selective_scan
from parcae_runner.kernels.wkv4 import wkv4

SHAPES = {
    "cuda": {
        "selective_scan": {"Bt": 8, "Dm": 1536, "N": 16, "L": 1024},
        "wkv4": {"B": 8, "T": 1024, "C": 768},
    },
    "cpu": {
        "selective_scan": {"Bt": 2, "Dm": 128, "N": 16, "L": 128},
        "wkv4": {"B": 2, "T": 128, "C": 256},
    },
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn() in milliseconds, synchronised before and after each call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64."""
    a, e = actual.detach().double(), expected.detach().double()
    return ((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()


# -- selective scan ------------------------------------------------------------------------------------------


def selective_scan_inputs(shape: dict, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """Mamba-like inputs; u, delta, B, C, z in ``dtype`` (as under autocast), A, D, delta_bias fp32 params."""
    bt, dm, n, length = shape["Bt"], shape["Dm"], shape["N"], shape["L"]
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*s: int, scale: float = 1.0, dt: torch.dtype = dtype) -> torch.Tensor:
        return (torch.randn(*s, generator=g) * scale).to(device=device, dtype=dt)

    return {
        "u": rnd(bt, dm, length),
        "delta": rnd(bt, dm, length, scale=0.5),
        "A": -torch.arange(1, n + 1, dtype=torch.float32, device=device).repeat(dm, 1),  # S4D-real init
        "B": rnd(bt, n, length),
        "C": rnd(bt, n, length),
        "D": rnd(dm, dt=torch.float32),
        "z": rnd(bt, dm, length),
        "delta_bias": rnd(dm, scale=0.5, dt=torch.float32) - 2.0,
    }


def selective_scan_impls(device: torch.device) -> dict[str, Callable | str]:
    """name -> fn(**inputs) or a string saying why the implementation is unavailable."""
    impls: dict[str, Callable | str] = {
        "reference": lambda **kw: selective_scan(**kw, delta_softplus=True, impl="reference")
    }
    if device.type != "cuda":
        impls["triton"] = "needs CUDA"
        impls["mamba_ssm"] = "needs CUDA"
        return impls
    impls["triton"] = lambda **kw: selective_scan(**kw, delta_softplus=True, impl="triton")
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as e:
        impls["mamba_ssm"] = f"not importable: {e}"
    else:
        impls["mamba_ssm"] = lambda **kw: selective_scan_fn(**kw, delta_softplus=True)
    return impls


# -- wkv4 ----------------------------------------------------------------------------------------------------


def wkv4_inputs(shape: dict, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    b, t, c = shape["B"], shape["T"], shape["C"]
    g = torch.Generator(device="cpu").manual_seed(0)
    return {
        "time_decay": (torch.randn(c, generator=g) - 1.0).to(device),
        "time_first": (torch.randn(c, generator=g) * 0.5).to(device),
        "key": torch.randn(b, t, c, generator=g).to(device=device, dtype=dtype),
        "value": torch.randn(b, t, c, generator=g).to(device=device, dtype=dtype),
    }


def wkv4_impls(device: torch.device) -> dict[str, Callable | str]:
    impls: dict[str, Callable | str] = {"reference": lambda **kw: wkv4(**kw, impl="reference")}
    if device.type != "cuda":
        impls["triton"] = "needs CUDA"
        impls["fla"] = "needs CUDA"
        return impls
    impls["triton"] = lambda **kw: wkv4(**kw, impl="triton")
    try:
        from fla.ops.rwkv4 import fused_recurrent_rwkv4
    except ImportError as e:
        impls["fla"] = f"not importable: {e}"
    else:

        def fla_wkv4(time_decay, time_first, key, value):
            # fla's state is [B, 3, 1, C] = (num, den, max), max starting at -1e38 like HF's
            b, _, c = key.shape
            state = torch.zeros(b, 3, 1, c, dtype=key.dtype, device=key.device)
            state[:, 2] = -1e38
            return fused_recurrent_rwkv4(time_decay, time_first, key, value, state)[0]

        impls["fla"] = fla_wkv4
    return impls


# -- driver --------------------------------------------------------------------------------------------------


def bench_kernel(
    impls: dict[str, Callable | str],
    inputs: dict[str, torch.Tensor],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> dict:
    """Times forward and forward+backward of each implementation and compares it with the reference."""
    leaves = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    names = list(leaves)
    results: dict[str, dict] = {}
    ref_out: list[torch.Tensor] | None = None
    grad_out: torch.Tensor | None = None
    for name, fn in impls.items():
        if isinstance(fn, str):
            results[name] = {"skipped": fn}
            continue
        try:
            out = fn(**leaves)
            if grad_out is None:
                grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
            grads = torch.autograd.grad(out, [leaves[k] for k in names], grad_out, allow_unused=True)
            vals = [out, *grads]
            entry: dict = {}
            if ref_out is None:
                ref_out = vals
            else:
                entry["max_rel_err_vs_reference"] = {
                    key: rel_err(a, b) if a is not None and b is not None else None
                    for key, a, b in zip(["out", *("d" + k for k in names)], vals, ref_out, strict=True)
                }
            del out, grads, vals

            # default arguments bind this iteration's fn / grad_out (the closures run before the loop moves on)
            def fwd(fn: Callable = fn) -> None:
                with torch.no_grad():
                    fn(**leaves)

            def fwd_bwd(fn: Callable = fn, g: torch.Tensor = grad_out) -> None:
                o = fn(**leaves)
                torch.autograd.grad(o, [leaves[k] for k in names], g, allow_unused=True)

            entry["fwd_ms"] = time_ms(fwd, device, warmup, repeats)
            entry["fwd_bwd_ms"] = time_ms(fwd_bwd, device, warmup, repeats)
            results[name] = entry
        except Exception as e:  # an optional third-party implementation failing must not lose the others
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    speedups = {}
    timed = {k: v for k, v in results.items() if "fwd_bwd_ms" in v}
    for name, entry in timed.items():
        for other, other_entry in timed.items():
            if name != other and name == "triton":
                speedups[f"triton_vs_{other}"] = {
                    "fwd": other_entry["fwd_ms"] / entry["fwd_ms"],
                    "fwd_bwd": other_entry["fwd_bwd_ms"] / entry["fwd_bwd_ms"],
                }
    return {"results": results, "speedup": speedups}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/kernels.json"))
    parser.add_argument("--warmup", type=int, default=None, help="default: 3 on CUDA, 1 on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 on CUDA, 3 on CPU")
    parser.add_argument(
        "--dtypes",
        default=None,
        help="comma-separated activation dtypes; default: float32,bfloat16 on CUDA, float32 on CPU",
    )
    parser.add_argument("--kernels", default="selective_scan,wkv4")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    repeats = args.repeats if args.repeats is not None else (10 if cuda else 3)
    dtypes = (args.dtypes or ("float32,bfloat16" if cuda else "float32")).split(",")
    shapes = SHAPES["cuda" if cuda else "cpu"]
    report: dict = {
        "device": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "host": platform.node(),
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "warmup": warmup,
        "repeats": repeats,
        "statistic": "median ms",
        "kernels": {},
    }
    builders = {"selective_scan": (selective_scan_inputs, selective_scan_impls), "wkv4": (wkv4_inputs, wkv4_impls)}
    for kernel in args.kernels.split(","):
        make_inputs, make_impls = builders[kernel]
        report["kernels"][kernel] = {"shape": shapes[kernel], "by_dtype": {}}
        for dtype_name in dtypes:
            inputs = make_inputs(shapes[kernel], getattr(torch, dtype_name), device)
            res = bench_kernel(make_impls(device), inputs, device, warmup, repeats)
            report["kernels"][kernel]["by_dtype"][dtype_name] = res
            print(kernel, dtype_name, json.dumps(res, indent=None))
    write_report(args.out, report)
    return report


def _cpu_name() -> str:
    from parcae_runner.runs.provenance import cpu_model

    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
