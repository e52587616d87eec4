"""Training throughput with ``train.compile=true`` against eager, per architecture, through the real training path.

Each run trains ``2 x --warmup`` steps; its tokens/s is the last log interval's (the timed second half), so the
compilation in the first steps is not counted. Runs alternate eager/compiled and the best of ``--repeats`` is kept.
The device is named in the report (CPU model, or the GPU's name): on CPU inductor emits C++, on GPU Triton.

    python bench/compile.py --out bench/out/compile.json
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from _common import timing_run, write_report

from parcae_runner.config import compose_run_config
from parcae_runner.models import ARCHITECTURES
from parcae_runner.runs.provenance import cpu_model
from parcae_runner.train.runner import train


def tokens_per_s(overrides: list[str]) -> tuple[float, float, float]:
    """Tokens/s of the timed half of a run, its final training loss, and its wall time (compilation included)."""
    start = time.perf_counter()
    run_dir = train(compose_run_config(overrides))
    wall = time.perf_counter() - start
    last = [r for r in run_dir.read_metrics() if "train/tokens_per_s" in r][-1]
    return float(last["train/tokens_per_s"]), float(last["train/loss"]), wall


def bench_arch(arch: str, size: str, warmup: int, repeats: int, batch: int, seq_len: int) -> dict:
    results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for compiled in (False, True):
                overrides = [
                    *timing_run(arch, size, warmup, batch, batch, seq_len),
                    f"train.compile={str(compiled).lower()}",
                    f"results_dir={tmp}",
                    f"run_name={arch}-{compiled}-{i}",
                ]
                results[compiled].append(tokens_per_s(overrides))
    eager, compiled = (max(r[0] for r in results[c]) for c in (False, True))
    return {
        "arch": arch,
        "size": size,
        "seq_len": seq_len,
        "batch_size": batch,
        "timed_steps": warmup,
        "tokens_per_s_eager": eager,
        "tokens_per_s_compiled": compiled,
        "speedup": compiled / eager,
        "final_loss_eager": results[False][0][1],
        "final_loss_compiled": results[True][0][1],
        "wall_s_eager": min(r[2] for r in results[False]),
        "wall_s_compiled_incl_compilation": min(r[2] for r in results[True]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/compile.json"))
    parser.add_argument("--archs", nargs="+", default=["pythia", "parcae", "mamba", "rwkv4"], help="or: all")
    parser.add_argument("--size", default="debug")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps, then as many timed ones")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    archs = sorted(ARCHITECTURES) if args.archs == ["all"] else args.archs
    results = [bench_arch(a, args.size, args.warmup, args.repeats, args.batch, args.seq_len) for a in archs]
    report = {
        "benchmark": "compile",
        "device": cpu_model() if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "accelerator": "gpu" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "host": platform.node(),
        "results": results,
    }
    summary = "\n".join(
        f"{r['arch']:>16} {r['size']}: eager {r['tokens_per_s_eager']:,.0f} tok/s, compiled "
        f"{r['tokens_per_s_compiled']:,.0f} tok/s, x{r['speedup']:.2f}"
        for r in results
    )
    write_report(args.out, report, summary)


if __name__ == "__main__":
    main()
