"""Wall time of `collect` on a 1,000-run sweep: cold (no cache), cached (nothing changed) and
incremental (10 runs changed), on synthetic run directories shaped like real ones.

    python bench/collect.py --out bench/out/collect.json

Each run directory has a run.json, a resolved config.yaml and a metrics.jsonl of 20 records
(train every 10 steps, validation every 50), as a 200-step run leaves them; the grid is
3 architectures x 4 sizes x 7 learning rates x 12 seeds (first 1,000 points), with sweep.json.
The benchmark process is fresh, so "cold" includes the first torch import (for FLOPs/token);
the files themselves are in the page cache (they were just written).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import write_report

ARCHS = {
    "pythia": "  rotary_pct: 0.25\n  rotary_base: 10000.0\n  norm_eps: 1.0e-05\n  mlp_ratio: 4\n"
    "  init: pythia\n  init_std: 0.02\n  tie_embeddings: false\n",
    "mamba": "",
    "rwkv4": "",
}
SIZES = ("14m", "31m", "70m", "160m")
LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)
SEEDS = range(12)
MAX_STEPS, TRAIN_EVERY, VAL_EVERY = 200, 10, 50
SEQ_LEN, BATCH, VOCAB = 1024, 32, 50304


def config_yaml(arch: str, size: str, lr: float, seed: int, root: Path, name: str) -> str:
    """A resolved config in OmegaConf.to_yaml's layout, the sections a real one has."""
    return (
        f"arch:\n  name: {arch}\n{ARCHS[arch]}size:\n  name: {size}\n"
        f"data:\n  source: embedded\n  path: null\n  vocab_size: {VOCAB}\n  seq_len: {SEQ_LEN}\n"
        "  val_fraction: 0.05\n  seed: 1234\n  cache_dir: /tmp/cache\n"
        f"train:\n  max_steps: {MAX_STEPS}\n  batch_size: {BATCH}\n  micro_batch_size: {BATCH}\n  lr: {lr}\n"
        f"  min_lr: {lr / 10}\n  warmup_steps: 20\n  schedule: cosine\n  weight_decay: 0.1\n  beta1: 0.9\n"
        "  beta2: 0.999\n  eps: 1.0e-08\n  grad_clip: 1.0\n  no_decay:\n  - bias\n  - norm\n  precision: auto\n"
        f"  val_interval: {VAL_EVERY}\n  val_batches: 8\n  log_interval: {TRAIN_EVERY}\n  checkpoint:\n"
        "    schedule: pythia\n    every: 1000\n    steps: []\n    save_last: true\n    keep_resume_state: 1\n"
        "  accelerator: auto\n  devices: auto\n  num_nodes: 1\n  num_workers: 0\n  progress: false\n"
        "  init_from: null\n"
        "cluster:\n  name: slurm_h100\n  launcher: slurm\n  partition: gpu\n  nodes: 1\n  gpus_per_node: 1\n"
        "  cpus_per_task: 8\n  mem_gb: 64.0\n  time_min: 240\n  max_requeues: 3\n  sbatch_extra: {}\n"
        "  country_iso_code: USA\n  region: null\n  gpu_type: h100\n  mfu: 0.4\n  pue: 1.2\n"
        "logger:\n  wandb: true\n  mode: offline\n  project: parcae-runner\n  entity: null\n  group: null\n"
        "  tags: []\n  codecarbon: true\n  measure_power_secs: 15.0\n"
        f"seed: {seed}\nresults_dir: {root.parent}\nsweep: {root.name}\nrun_name: {name}\n"
    )


def metrics_lines(rng: random.Random) -> str:
    lines = []
    for step in range(0, MAX_STEPS + 1, TRAIN_EVERY):
        loss = 10.8 * (1 + step) ** -0.12 + rng.gauss(0, 0.01)
        if step:
            record = {"step": step, "train/loss": loss, "train/lr": 1e-3, "train/tokens": step * BATCH * SEQ_LEN}
            lines.append(json.dumps({**record, "train/tokens_per_s": 1.2e5}, sort_keys=True))
        if step % VAL_EVERY == 0:
            lines.append(json.dumps({"step": step, "val/bpb": loss / 2.2, "val/loss": loss, "val/tokens": 2.6e5}))
    return "\n".join(lines) + "\n"


def make_sweep(root: Path, n_runs: int) -> None:
    rng = random.Random(0)
    root.mkdir(parents=True)
    grid = itertools.islice(itertools.product(ARCHS, SIZES, LRS, SEEDS), n_runs)
    names = []
    for arch, size, lr, seed in grid:
        name = f"{arch}-{size}-s{seed}-lr{lr}"
        names.append(name)
        run_dir = root / name
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(config_yaml(arch, size, lr, seed, root, name))
        (run_dir / "metrics.jsonl").write_text(metrics_lines(rng))
        duration = rng.uniform(600, 3600)
        run = {
            "arch": arch,
            "attempts": 1,
            "attempt_history": [{"attempt": 1, "status": "done", "start_step": 0, "end_step": MAX_STEPS}],
            "best_val_loss": 3.5,
            "co2_kg": 0.01,
            "data": {"dir": "/tmp/cache/x", "hash": "ab" * 32, "vocab_size": VOCAB, "train_tokens": 10**9},
            "data_seed": 1234,
            "duration_s": duration,
            "energy_kwh": 0.3,
            "final_val_loss": 3.5,
            "hardware": {"accelerator": "gpu", "device_name": "NVIDIA H100 80GB HBM3", "devices": 1, "num_nodes": 1},
            "max_steps": MAX_STEPS,
            "params": 10**7,
            "params_non_embedding": 5 * 10**6,
            "run_name": name,
            "seed": seed,
            "size": size,
            "status": "done",
            "step": MAX_STEPS,
            "sweep": root.name,
            "tokens": MAX_STEPS * BATCH * SEQ_LEN,
            "tokens_per_step": BATCH * SEQ_LEN,
        }
        (run_dir / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
    params = {
        "arch": ",".join(ARCHS),
        "size": ",".join(SIZES),
        "train.lr": ",".join(map(str, LRS)),
        "seed": f"range(0,{len(SEEDS)})",
    }
    (root / "sweep.json").write_text(json.dumps({"name": root.name, "params": params, "runs": names}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/collect.json"))
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench-collect"
        t0 = time.perf_counter()
        make_sweep(root, args.runs)
        t_make = time.perf_counter() - t0

        t0 = time.perf_counter()
        from parcae_runner.analysis.collect import collect

        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        df = collect(root)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = collect(root)
        t_cached = time.perf_counter() - t0
        # 10 runs moved on: one more train record each
        for run_dir in sorted(p for p in root.iterdir() if p.is_dir())[:10]:
            with (run_dir / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": MAX_STEPS, "train/loss": 3.0}) + "\n")
        t0 = time.perf_counter()
        collect(root)
        t_incremental = time.perf_counter() - t0
        same = again.equals(df)

    from parcae_runner.runs.provenance import cpu_model  # after the timings: its imports are not part of them

    report = {
        "benchmark": "collect",
        "runs": args.runs,
        "rows": len(df),
        "columns": len(df.columns),
        "records_per_run": MAX_STEPS // TRAIN_EVERY + MAX_STEPS // VAL_EVERY + 1,
        "cold_s": t_cold,
        "cached_s": t_cached,
        "incremental_10_changed_s": t_incremental,
        "import_s": t_import,
        "make_runs_s": t_make,
        "cached_equals_cold": same,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "target": "cold collect of 1,000 runs < 10 s",
    }
    summary = (
        f"{args.runs} runs -> {len(df)} rows x {len(df.columns)} columns: cold {t_cold:.2f} s, "
        f"cached {t_cached:.3f} s, 10 changed {t_incremental:.2f} s (import {t_import:.2f} s; {report['cpu']})"
    )
    write_report(args.out, report, summary)


if __name__ == "__main__":
    main()
