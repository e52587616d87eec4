"""Training throughput of the Lightning path against a minimal plain-PyTorch loop.

Both loops train the same model (same seed), on the same batches (same sampler), with the
same optimizer, schedule, clipping and accumulation, in the same process; each is timed
over the same steps after a warm-up. Runs alternate and the best of ``--repeats`` is kept,
so a background hiccup does not decide the ratio.

    python bench/train_throughput.py --out bench/out/train_throughput.json
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from _common import write_report
from torch.utils.data import DataLoader

from parcae_runner.config import compose_run_config
from parcae_runner.config.validate import gradient_accumulation
from parcae_runner.data import StepSampler, TokenChunks, prepare_data
from parcae_runner.models import build_model, count_parameters
from parcae_runner.runs.provenance import cpu_model
from parcae_runner.train.optim import build_optimizer
from parcae_runner.train.runner import train


def plain_loop(cfg, data, warmup: int, steps: int) -> float:
    """Tokens/s of a hand-written loop over steps [warmup, warmup + steps)."""
    L.seed_everything(cfg.seed, verbose=False)
    model = build_model(cfg.arch, cfg.size.name, data.vocab_size)
    opt, sched = build_optimizer(model, cfg.train)
    accumulate = gradient_accumulation(cfg)
    dataset = TokenChunks(data.train, cfg.data.seq_len)
    sampler = StepSampler(
        len(dataset), cfg.data.seed, cfg.train.micro_batch_size, accumulate, 1, 0, 0, cfg.train.max_steps
    )
    batches = iter(DataLoader(dataset, batch_size=cfg.train.micro_batch_size, sampler=sampler))
    model.train()
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        for _ in range(accumulate):
            x, y = next(batches)
            logits = model(x)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)) / accumulate
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return steps * cfg.train.batch_size * cfg.data.seq_len / elapsed


def bench_size(size: str, warmup: int, repeats: int, batch: int) -> dict:
    steps = warmup
    overrides = [
        "arch=pythia",
        f"size={size}",
        "logger=none",
        "train.progress=false",
        "train.val_batches=0",
        f"train.max_steps={warmup + steps}",
        f"train.log_interval={warmup}",
        f"train.batch_size={batch}",
        f"train.micro_batch_size={batch}",
        "train.checkpoint.schedule=none",
        "train.checkpoint.save_last=false",
    ]
    cfg = compose_run_config(overrides)
    data = prepare_data(cfg.data, progress=False)
    lightning, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            run_cfg = compose_run_config(overrides + [f"results_dir={tmp}", f"run_name={size}-{i}"])
            run_dir = train(run_cfg)
            lightning.append([r for r in run_dir.read_metrics() if "train/tokens_per_s" in r][-1]["train/tokens_per_s"])
            plain.append(plain_loop(cfg, data, warmup, steps))
    model = build_model(cfg.arch, size, data.vocab_size)
    return {
        "arch": "pythia",
        "size": size,
        "params": count_parameters(model),
        "vocab_size": data.vocab_size,
        "seq_len": cfg.data.seq_len,
        "batch_size": batch,
        "timed_steps": steps,
        "tokens_per_s_lightning": max(lightning),
        "tokens_per_s_plain_torch": max(plain),
        "ratio": max(lightning) / max(plain),
        "all_lightning": lightning,
        "all_plain_torch": plain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/train_throughput.json"))
    parser.add_argument("--sizes", nargs="+", default=["debug", "14m"])
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps, then as many timed ones")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    results = [bench_size(s, args.warmup, args.repeats, args.batch) for s in args.sizes]
    report = {
        "benchmark": "train_throughput",
        "device": cpu_model() if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "accelerator": "gpu" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "host": platform.node(),
        "results": results,
    }
    summary = "\n".join(
        f"{r['size']:>6}: lightning {r['tokens_per_s_lightning']:,.0f} tok/s, plain torch "
        f"{r['tokens_per_s_plain_torch']:,.0f} tok/s, ratio {r['ratio']:.3f}"
        for r in results
    )
    write_report(args.out, report, summary)


if __name__ == "__main__":
    main()
