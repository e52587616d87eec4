"""Training tokens/s of FSDP2 (``train.strategy=fsdp``) against DDP (``train.strategy=ddp``) at 2 ranks on the CPU,
through the real training path (``parcae-runner train``, gloo), as a ratio measured in one run.

Each round trains the same run once per strategy, alternating (the order flips every round, so neither always runs
on a warmer or a busier machine); a run trains ``2 x --warmup`` steps and its tokens/s is its last log interval's
(the timed second half: process start, data loading and the first steps are not counted). ``ratio`` is the median
over ``--repeats`` rounds of each round's FSDP tokens/s over its DDP tokens/s (the two runs of a round share the
machine's background load); the best tokens/s of each strategy and their ratio are kept beside it. Both
strategies train the same global batches, so their final losses agree (kept as a check that both did the same work).

Then, per size, the same comparison step by step (:func:`interleaved`): both strategies in one pair of processes,
one optimizer step of each in turn on the same batches, so that both see the same machine; on a busy one this is the
ratio to read.

The ranks are processes Lightning launches from the command line, so each run is the CLI in a subprocess. What FSDP
does differently, per micro batch: an all-gather of each block's parameters before its forward and again before its
backward (``train.fsdp.reshard_after_forward``) and a reduce-scatter of its gradients, where DDP all-reduces the
gradients once per optimizer step (Lightning skips DDP's sync while accumulating, ``no_sync``; its
ModelParallelStrategy does not skip FSDP's). Over gloo between two processes on one machine these are memory copies,
and the ranks wait for each other at every one, so a busy machine slows FSDP more than DDP: the report keeps the load.

    python bench/fsdp.py --out bench/out/fsdp.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from _common import timing_run, write_report

from parcae_runner.runs.provenance import cpu_model

STRATEGIES = ("fsdp", "ddp")
RANKS = 2


def run_settings(arch: str, size: str, warmup: int, batch: int, micro_batch: int, seq_len: int) -> list[str]:
    """The overrides every run of one size shares (the strategy and the run's name come on top)."""
    return [
        *timing_run(arch, size, warmup, batch, micro_batch, seq_len),
        "train.accelerator=cpu",
        f"train.devices={RANKS}",
    ]


def timed_run(overrides: list[str], results: Path, name: str) -> dict:
    """One 2-rank run: the timed half's tokens/s, its final training loss and the run's wall time."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "train", *overrides, f"results_dir={results}", f"run_name={name}"],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    metrics = [json.loads(line) for line in (results / "single" / name / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "train/tokens_per_s" in m][-1]
    return {"tokens_per_s": float(last["train/tokens_per_s"]), "loss": float(last["train/loss"]), "wall_s": wall}


def bench_size(arch: str, size: str, args: argparse.Namespace) -> dict:
    settings = run_settings(arch, size, args.warmup, args.batch, args.micro_batch, args.seq_len)
    rounds: list[dict[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = STRATEGIES if i % 2 == 0 else STRATEGIES[::-1]
            rounds.append(
                {s: timed_run([*settings, f"train.strategy={s}"], Path(tmp), f"{size}-{s}-{i}") for s in order}
            )
            rates = ", ".join(f"{s} {rounds[-1][s]['tokens_per_s']:,.0f} tok/s" for s in order)
            print(f"{arch} {size} round {i}: {rates}")
    best = {s: max(r[s]["tokens_per_s"] for r in rounds) for s in STRATEGIES}
    round_ratios = [r["fsdp"]["tokens_per_s"] / r["ddp"]["tokens_per_s"] for r in rounds]
    return {
        "arch": arch,
        "size": size,
        "timed_steps": args.warmup,
        "tokens_per_s_fsdp": best["fsdp"],
        "tokens_per_s_ddp": best["ddp"],
        # the two runs of a round ran back to back, under the same background load: their ratio is the robust one
        "ratio": statistics.median(round_ratios),
        "ratio_of_best": best["fsdp"] / best["ddp"],
        "round_ratios": round_ratios,
        "rounds": rounds,
        "final_loss_fsdp": rounds[0]["fsdp"]["loss"],
        "final_loss_ddp": rounds[0]["ddp"]["loss"],
    }


def _step(model, opt, sched, batches: list[torch.Tensor], clip: float, no_sync) -> None:
    """One optimizer step over this rank's micro batches, as the trainer takes it (the loss of each micro batch over
    the accumulation steps); ``no_sync``: DDP's, on every micro batch but the last (Lightning's accumulation)."""
    for i, ids in enumerate(batches):
        with no_sync() if no_sync is not None and i < len(batches) - 1 else contextlib.nullcontext():
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten()) / len(batches)
            loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def _interleaved_worker(rank: int, port: int, arch: str, size: str, args: argparse.Namespace, out: str) -> None:
    """Both strategies in one pair of processes, one optimizer step of each in turn on the same batches."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.nn.parallel import DistributedDataParallel

    from parcae_runner.config import compose_run_config
    from parcae_runner.models import build_model
    from parcae_runner.train.optim import build_optimizer
    from parcae_runner.train.sharding import shard_model, shard_unit_classes

    # as Lightning sets them for CPU ranks: the cores shared out
    torch.set_num_threads(max(1, (os.cpu_count() or RANKS) // RANKS))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    cfg = compose_run_config([f"arch={arch}", f"size={size}", "train.strategy=fsdp"])
    vocab = int(cfg.data.vocab_size)
    models = {}
    for strategy in STRATEGIES:
        torch.manual_seed(0)
        model = build_model(cfg.arch, size, vocab)
        if strategy == "fsdp":
            shard_model(model, shard_unit_classes(arch), init_device_mesh("cpu", (RANKS,)), cfg)
            wrapped, no_sync = model, None
        else:
            wrapped = DistributedDataParallel(model)
            no_sync = wrapped.no_sync
        models[strategy] = (wrapped, *build_optimizer(model, cfg.train), no_sync)
    accumulate = args.batch // (args.micro_batch * RANKS)
    g = torch.Generator().manual_seed(1000 + rank)
    seconds = dict.fromkeys(STRATEGIES, 0.0)
    for step in range(2 * args.warmup):
        batches = [
            torch.randint(0, vocab, (args.micro_batch, args.seq_len + 1), generator=g) for _ in range(accumulate)
        ]
        for strategy in STRATEGIES if step % 2 == 0 else STRATEGIES[::-1]:
            dist.barrier()
            started = time.perf_counter()
            _step(*models[strategy][:3], batches, float(cfg.train.grad_clip or 0), models[strategy][3])
            dist.barrier()
            if step >= args.warmup:
                seconds[strategy] += time.perf_counter() - started
    if rank == 0:
        Path(out).write_text(json.dumps(seconds))
    dist.destroy_process_group()


def interleaved(arch: str, size: str, args: argparse.Namespace) -> dict:
    """tokens/s of each strategy over the timed steps, alternating step by step in the same 2 processes: the two
    see the same machine, so their ratio holds on a busy one. The model, optimizer, clipping and accumulation are the
    trainer's; Lightning's loop, logging and checkpoints are not in it (the end-to-end rounds have them)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "seconds.json")
        mp.spawn(_interleaved_worker, args=(port, arch, size, args, out), nprocs=RANKS, join=True)
        seconds = json.loads(Path(out).read_text())
    tokens = args.warmup * args.batch * args.seq_len
    rates = {s: tokens / seconds[s] for s in STRATEGIES}
    print(f"{arch} {size} interleaved: " + ", ".join(f"{s} {rates[s]:,.0f} tok/s" for s in STRATEGIES))
    return {"tokens_per_s_fsdp": rates["fsdp"], "tokens_per_s_ddp": rates["ddp"], "ratio": rates["fsdp"] / rates["ddp"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/fsdp.json"))
    parser.add_argument("--arch", default="pythia")
    parser.add_argument("--sizes", nargs="+", default=["debug", "14m"])
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps, then as many timed ones")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, each one run per strategy")
    parser.add_argument("--batch", type=int, default=16, help="the global batch, in sequences")
    parser.add_argument("--micro-batch", type=int, default=4, help="per rank (the rest is gradient accumulation)")
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = [
        {**bench_size(args.arch, size, args), "interleaved": interleaved(args.arch, size, args)} for size in args.sizes
    ]
    report = {
        "benchmark": "fsdp",
        "device": cpu_model(),
        "accelerator": "cpu",
        "cpus": os.cpu_count(),
        "ranks": RANKS,
        "backend": "gloo",
        "torch": torch.__version__,
        "lightning": L.__version__,
        "host": platform.node(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "out"},
            "overrides": run_settings(args.arch, "<size>", args.warmup, args.batch, args.micro_batch, args.seq_len),
            "strategies": {"fsdp": "train.strategy=fsdp", "ddp": "train.strategy=ddp"},
        },
        "results": results,
    }
    summary = "\n".join(
        f"{r['arch']} {r['size']:>6}: fsdp {r['tokens_per_s_fsdp']:,.0f} tok/s, "
        f"ddp {r['tokens_per_s_ddp']:,.0f} tok/s, "
        f"ratio {r['ratio']:.3f} (rounds: {', '.join(f'{x:.3f}' for x in r['round_ratios'])}); "
        f"interleaved steps: ratio {r['interleaved']['ratio']:.3f}"
        for r in results
    )
    write_report(args.out, report, summary)


if __name__ == "__main__":
    main()
