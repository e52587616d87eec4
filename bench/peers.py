"""Our trainer against a plain training loop over the stock ``transformers`` class at the same shape, in one process.

    python bench/peers.py --out bench/out/peers.json

Pairs: pythia vs ``GPTNeoXForCausalLM``, mamba vs ``MambaForCausalLM``, rwkv4 vs ``RwkvForCausalLM``. The peer's
config is our model's own export mapping (``models/<arch>/hf.py``: ``to_hf_config``), so both have the same layers,
widths and vocabulary; both train on the same batches (``TokenChunks`` + ``StepSampler``) with the same optimizer,
schedule and clipping (``build_optimizer`` from the run config), the peer with the loss computed as ours is.

Rounds alternate (ours, peer, peer, ours, ...) so a background load hits both alike; each side's steady-state
tokens/s is timed over the steps after ``--warmup`` and the best round is kept. Ours is ``parcae-runner train``
itself (Lightning, the run directory, metrics, divergence guard; no wandb, codecarbon or checkpoints in the timed
window, as their cost is counted by the whole-job figure instead).

Whole-job overhead (``--job-steps``, default 1,000): a debug pythia trained end to end with the defaults (validation,
the checkpoint schedule, codecarbon, offline wandb), wall time against ``job_steps`` x the steady step time of the
same configuration (the last metrics window, measured in the same job): what start-up, validation, checkpoints and
logging add.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from _common import write_report
from torch.utils.data import DataLoader

from parcae_runner.config import compose_run_config
from parcae_runner.data import StepSampler, TokenChunks, prepare_data
from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.hf import hf_mappings
from parcae_runner.runs.provenance import cpu_model
from parcae_runner.train.optim import build_optimizer
from parcae_runner.train.runner import train

PEERS = {"pythia": "GPTNeoXForCausalLM", "mamba": "MambaForCausalLM", "rwkv4": "RwkvForCausalLM"}
# 6 layers x 128 where the architecture has it (pythia, rwkv4 14m); mamba's 14m is 64 layers deep, so its debug size
SIZES = {"pythia": "14m", "mamba": "debug", "rwkv4": "14m"}


def peer_model(cfg, vocab: int) -> torch.nn.Module:
    import transformers

    ours = build_model(cfg.arch, cfg.size.name, vocab)
    config = hf_mappings()[cfg.arch.name].to_hf_config(ours)
    torch.manual_seed(cfg.seed)
    return getattr(transformers, PEERS[cfg.arch.name])(config)


def peer_loop(cfg, data, warmup: int, steps: int) -> float:
    """Tokens/s of a plain loop over the stock class, steps [warmup, warmup + steps)."""
    L.seed_everything(cfg.seed, verbose=False)
    model = peer_model(cfg, data.model_vocab_size)
    opt, sched = build_optimizer(model, cfg.train)
    dataset = TokenChunks(data.train, cfg.data.seq_len)
    sampler = StepSampler(len(dataset), cfg.data.seed, cfg.train.micro_batch_size, 1, 1, 0, 0, cfg.train.max_steps)
    batches = iter(DataLoader(dataset, batch_size=cfg.train.micro_batch_size, sampler=sampler))
    model.train()
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = next(batches)
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return steps * cfg.train.batch_size * cfg.data.seq_len / (time.perf_counter() - start)


def ours(overrides: list[str], tmp: str, name: str) -> float:
    """Steady tokens/s of ``parcae-runner train``: its metrics window from the warm-up to the last step."""
    run_dir = train(compose_run_config([*overrides, f"results_dir={tmp}", f"run_name={name}"]))
    return [r for r in run_dir.read_metrics() if "train/tokens_per_s" in r][-1]["train/tokens_per_s"]


def bench_pair(arch: str, size: str, args) -> dict:
    overrides = [
        f"arch={arch}",
        f"size={size}",
        f"data.vocab_size={args.vocab}",
        f"data.seq_len={args.seq_len}",
        "logger=none",
        "train.progress=false",
        "train.val_batches=0",
        f"train.max_steps={args.warmup + args.steps}",
        f"train.log_interval={args.warmup}",
        f"train.batch_size={args.batch}",
        f"train.micro_batch_size={args.batch}",
        "train.checkpoint.schedule=none",
        "train.checkpoint.save_last=false",
    ]
    cfg = compose_run_config(overrides)
    data = prepare_data(cfg.data, progress=False)
    mine, peer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            first_ours = i % 2 == 0
            if first_ours:
                mine.append(ours(overrides, tmp, f"{arch}-{i}"))
            peer.append(peer_loop(cfg, data, args.warmup, args.steps))
            if not first_ours:
                mine.append(ours(overrides, tmp, f"{arch}-{i}"))
            shown = f"ours {mine[-1]:,.0f} tok/s, {PEERS[arch]} {peer[-1]:,.0f} tok/s"
            print(f"  {arch} round {i + 1}: {shown}", flush=True)
    model = build_model(cfg.arch, size, data.model_vocab_size)
    return {
        "arch": arch,
        "peer": f"transformers.{PEERS[arch]}",
        "size": size,
        "params": count_parameters(model),
        "vocab_size": data.model_vocab_size,
        "seq_len": args.seq_len,
        "batch_size": args.batch,
        "timed_steps": args.steps,
        "tokens_per_s_ours": max(mine),
        "tokens_per_s_peer": max(peer),
        "ratio": max(mine) / max(peer),
        "ratio_per_round": [a / b for a, b in zip(mine, peer, strict=True)],
        # under a background load the best rounds of the two sides can come from different load levels: the median of
        # the per-round ratios (each from two adjacent runs) is the figure less moved by it
        "ratio_median_of_rounds": statistics.median(a / b for a, b in zip(mine, peer, strict=True)),
        "all_ours": mine,
        "all_peer": peer,
    }


def whole_job(steps: int) -> dict:
    """A debug pythia with every default on (validation, checkpoints, codecarbon, offline wandb), end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["arch=pythia", "size=debug", "train.progress=false", f"train.max_steps={steps}"]
        # the embedded corpus is small: a 1,000-step job repeats it (what is timed is the job, not the data)
        overrides.append("data.max_epochs=100")
        overrides += [f"results_dir={tmp}", "logger=offline", "run_name=job"]
        cfg = compose_run_config(overrides)
        prepare_data(cfg.data, progress=False)  # tokenizer and shards cached: not the job's cost
        started = time.perf_counter()
        run_dir = train(cfg)
        wall = time.perf_counter() - started
        rows = [r for r in run_dir.read_metrics() if "train/tokens_per_s" in r]
        # steady step time: the median window of the second half (no validation or checkpoint there on the
        # log-spaced schedule, and warm)
        rates = [r["train/tokens_per_s"] for r in rows[len(rows) // 2 :]]
        step_s = run_dir.read_run()["tokens_per_step"] / statistics.median(rates)
        checkpoints = len(list(run_dir.checkpoints.glob("checkpoint-*")))
    return {
        "steps": steps,
        "wall_s": wall,
        "steady_step_ms": step_s * 1e3,
        "steady_s": steps * step_s,
        "overhead": wall / (steps * step_s) - 1,
        "checkpoints": checkpoints,
        "val_interval": cfg.train.val_interval,
        "log_interval": cfg.train.log_interval,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/peers.json"))
    parser.add_argument("--archs", default=",".join(PEERS))
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps, then --steps timed ones")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-steps", type=int, default=1000, help="the whole-job run's steps (0: skip it)")
    args = parser.parse_args(argv)
    results = [bench_pair(a, SIZES[a], args) for a in args.archs.split(",") if a]
    report = {
        "benchmark": "peers",
        "device": cpu_model() if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "transformers": __import__("transformers").__version__,
        "host": platform.node(),
        "results": results,
        "whole_job": whole_job(args.job_steps) if args.job_steps else None,
    }
    lines = [
        f"{r['arch']:>7} vs {r['peer']}: ours {r['tokens_per_s_ours']:,.0f} tok/s, peer {r['tokens_per_s_peer']:,.0f} "
        f"tok/s, ratio {r['ratio']:.3f}, median of rounds {r['ratio_median_of_rounds']:.3f} "
        f"(rounds: {', '.join(f'{x:.2f}' for x in r['ratio_per_round'])})"
        for r in results
    ]
    if report["whole_job"]:
        j = report["whole_job"]
        lines.append(
            f"whole job, {j['steps']} debug steps: {j['wall_s']:.1f} s against {j['steady_s']:.1f} s of steady steps: "
            f"overhead {j['overhead']:.1%}"
        )
    write_report(args.out, report, "\n".join(lines))
    return report


if __name__ == "__main__":
    main()
