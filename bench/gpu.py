"""What a lent GPU machine measures, in one command (``make bench-gpu``): per architecture at 160m (the nearest size
an architecture has, e.g. Parcae's 140m) in bf16, training tokens/s, achieved FLOP/s, MFU and peak memory, with and
without ``torch.compile``; then the Triton kernels against their references and against mamba_ssm /
flash-linear-attention where installed (bench/kernels.py at training shapes); then the same measurement of a 1B
LLaMA sharded as ``train.strategy=fsdp`` shards it (FSDP2 ``fully_shard`` per block, bf16 parameters with fp32
gradient reduction, fp32 master weights and AdamW states: train/sharding.py), whose MFU the issue holds to >= 40%.
Results as JSON under ``bench/results/``, named by the device.

    python bench/gpu.py                      # on a CUDA machine: everything above
    python bench/gpu.py --allow-cpu ...      # the same path on a CPU (tiny shapes: tests), no MFU

On a machine without CUDA (and without ``--allow-cpu``) it says it needs a GPU and exits 0, so ``make bench-gpu``
can run anywhere.

Method: for each (architecture, compile) the model is built from the run config's defaults (``compose_run_config``:
the same optimizer, schedule and clipping as ``parcae-runner train``), trained ``--warmup`` untimed steps (compilation
happens there) and ``--steps`` timed ones on random tokens under autocast; FLOP/s = tokens/s x training FLOPs per
token (models/flops.py); MFU = FLOP/s / the device's dense peak (config/hardware.py). The FSDP measurement runs on
one rank (a one-process group: NCCL on a GPU, gloo on a CPU), as a lent machine has one GPU: each unit is still
gathered, cast to bf16 and freed around its forward and backward, and its gradients reduced, over a group of one, so
the figure holds FSDP's own costs (casts, hooks, copies) but no network's.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed
import torch.nn.functional as F
from _common import write_report

from parcae_runner.config import compose_run_config
from parcae_runner.config.hardware import device_peak_flops
from parcae_runner.models import ARCHITECTURES, build_model, count_parameters
from parcae_runner.models.flops import training_flops_per_token
from parcae_runner.train.optim import build_optimizer

# OLMo-core reports 39-41% bf16 MFU for a 1B model on H100s, torchtitan 33-39% for Llama-3.1-8B (issue 26)
FSDP_MFU_GOAL = 0.40
NEEDS_GPU = (
    "bench-gpu needs a CUDA GPU and this machine has none (torch.cuda.is_available() is False): nothing measured"
)


def _size_value(name: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([mb])", name)
    return float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9) if m else None


def nearest_size(arch: str, want: str) -> str:
    """``want`` when the architecture has it, else its size nearest in parameters (by name: 160m -> 140m)."""
    sizes = list(ARCHITECTURES[arch].sizes)
    if want in sizes:
        return want
    target = _size_value(want)
    numeric = [(abs(_size_value(s) - target), s) for s in sizes if _size_value(s) and target]
    if not numeric:
        raise SystemExit(f"{arch} has no size {want} (sizes: {', '.join(sizes)})")
    return min(numeric)[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def one_rank_group(device: torch.device) -> Iterator[None]:
    """A process group of this process alone (FSDP needs one), unless one exists; destroyed afterwards."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    if device.type == "cuda":  # NCCL's device: the one given, else the current one (torch.device("cuda") has no index)
        torch.cuda.set_device(device.index if device.index is not None else torch.cuda.current_device())
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard_like_training(model: torch.nn.Module, cfg, device: torch.device, compile_model: bool) -> None:
    """In place, as ``parcae-runner train`` with ``train.strategy=fsdp`` does: compile first (train/speed.py), then
    ``fully_shard`` each block and the root over this process's group (train/sharding.py)."""
    from torch.distributed.device_mesh import init_device_mesh

    from parcae_runner.train.sharding import shard_model, shard_unit_classes
    from parcae_runner.train.speed import compile_model as compile_in_place

    if compile_model:
        compile_in_place(model)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    shard_model(model, shard_unit_classes(str(cfg.arch.name)), mesh, cfg)


def bench_model(
    arch: str,
    size: str,
    device: torch.device,
    dtype: str,
    compile_model: bool,
    batch: int,
    seq_len: int,
    vocab: int,
    warmup: int,
    steps: int,
    fsdp: bool = False,
) -> dict:
    """Training throughput of one architecture at one size, with or without torch.compile; ``fsdp``: sharded as
    ``train.strategy=fsdp`` shards it, inside a process group (:func:`one_rank_group`)."""
    overrides = [f"arch={arch}", f"size={size}", f"data.seq_len={seq_len}", f"data.vocab_size={vocab}"]
    cfg = compose_run_config([*overrides, *(["train.strategy=fsdp"] if fsdp else [])])
    torch.manual_seed(0)
    model = build_model(cfg.arch, size, vocab).to(device)
    model.train()
    flops_per_token = training_flops_per_token(model, seq_len)
    params = count_parameters(model)
    if fsdp:
        shard_like_training(model, cfg, device, compile_model)
        step_model = model
    else:
        step_model = torch.compile(model) if compile_model else model
    # after sharding: the optimizer holds the sharded parameters
    opt, sched = build_optimizer(model, cfg.train, device.type)
    autocast = (
        torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype != "float32" else contextlib.nullcontext()
    )
    g = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, vocab, (warmup + steps, batch, seq_len + 1), generator=g)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(i: int) -> None:
        x, y = tokens[i, :, :-1].to(device, non_blocking=True), tokens[i, :, 1:].to(device, non_blocking=True)
        with autocast:
            logits = step_model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    _sync(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    _sync(device)
    elapsed = time.perf_counter() - started
    tokens_per_s = steps * batch * seq_len / elapsed
    flops_per_s = tokens_per_s * flops_per_token
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    precision = "bf16-mixed" if dtype == "bfloat16" else ("16-mixed" if dtype == "float16" else "32-true")
    peak = device_peak_flops(device.type, name, "cpu", precision)
    if device.type == "cuda":
        memory_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        import resource

        memory_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    result = {
        "arch": arch,
        "size": size,
        "strategy": "fsdp" if fsdp else "single",
        "world_size": torch.distributed.get_world_size() if fsdp else 1,
        "compile": compile_model,
        "dtype": dtype,
        "params": params,
        "batch": batch,
        "seq_len": seq_len,
        "warmup_steps": warmup,
        "warmup_s": warmup_s,
        "steps": steps,
        "step_ms": elapsed / steps * 1e3,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": flops_per_token,
        "flops_per_s": flops_per_s,
        "mfu": flops_per_s / peak if peak else None,
        "peak_memory_gib": memory_gib,
    }
    return result


def measure(
    arch: str, size: str, compile_model: bool, fsdp: bool, device: torch.device, args: argparse.Namespace, report: dict
) -> dict | None:
    """One measurement into ``report["models"]``; a failure (out of memory, a compile error) goes to
    ``report["errors"]`` instead, so that it does not lose the rest."""
    try:
        with one_rank_group(device) if fsdp else contextlib.nullcontext():
            r = bench_model(
                arch, size, device, args.dtype, compile_model, args.batch, args.seq_len, args.vocab,
                args.warmup, args.steps, fsdp=fsdp,
            )  # fmt: skip
    except Exception as e:
        error = {"arch": arch, "compile": compile_model, "fsdp": fsdp, "error": f"{type(e).__name__}: {e}"}
        report["errors"].append(error)
        print(f"{arch} {size} compile={compile_model} fsdp={fsdp}: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["models"].append(r)
    return r


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated (default: every one)")
    parser.add_argument("--size", default="160m")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--compile", default="both", choices=("both", "on", "off"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (torch.compile compiles here)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--kernels", default="selective_scan,wkv4", help="bench/kernels.py kernels; '' for none")
    parser.add_argument("--fsdp-arch", default="llama", help="the model measured under FSDP")
    parser.add_argument("--fsdp-size", default="1b", help="its size ('' for no FSDP measurement)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU (tests of this script; no MFU)")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(NEEDS_GPU)
        return None
    device = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    report: dict = {
        "device": device_name,
        "device_type": device.type,
        "host": platform.node(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "method": "steady-state training steps on random tokens, after warm-up; FLOPs from models/flops.py",
        "models": [],
        "errors": [],
    }
    compiles = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    jobs = [(a, nearest_size(a, args.size), c, False) for a in args.archs.split(",") if a for c in compiles]
    if args.fsdp_size:
        report["fsdp_mfu_goal"] = FSDP_MFU_GOAL
        jobs += [(args.fsdp_arch, args.fsdp_size, c, True) for c in compiles]
    for arch, size, compile_model, fsdp in jobs:
        r = measure(arch, size, compile_model, fsdp, device, args, report)
        if r is None:
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        goal = f" (goal >= {FSDP_MFU_GOAL:.0%})" if fsdp else ""
        print(
            f"{arch + (' fsdp' if fsdp else ''):16s} {size:6s} compile={str(compile_model):5s} "
            f"{r['tokens_per_s']:12,.0f} tok/s {r['flops_per_s'] / 1e12:8.2f} TFLOP/s  MFU {mfu:>6s}{goal}  "
            f"peak {r['peak_memory_gib']:.2f} GiB"
        )
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or device.type
    if args.kernels:
        # bench/kernels.py by its path: a plain `import kernels` can find another module of that name first (the
        # test suite's `kernels` package, when this runs inside pytest)
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_kernels", Path(__file__).with_name("kernels.py"))
        kernels = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(kernels)
        kernel_out = args.out_dir / f"gpu-kernels-{slug}.json"
        report["kernels"] = kernels.main(["--out", str(kernel_out), "--kernels", args.kernels])
    out = args.out_dir / f"gpu-{slug}.json"
    write_report(out, report, f"{len(report['models'])} model measurements, {len(report['errors'])} errors")
    return report


if __name__ == "__main__":
    main()
