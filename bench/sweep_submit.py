"""Wall time of `plan` + submission of a 72-point grid (3 architectures x 4 sizes x 6 seeds) to
Slurm, submitted held (`sbatch --hold`) and cancelled afterwards, and the number of sbatch calls.

    python bench/sweep_submit.py --out bench/out/sweep_submit.json

Needs a Slurm that answers (slurm/local_cluster/start brings one up on this machine). sbatch
calls are counted by a shim put first on PATH that logs each call and runs the real sbatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_report

from parcae_runner.models import ARCHITECTURES

REPO = Path(__file__).resolve().parents[1]


def write_grid(folder: Path) -> Path:
    archs = ",".join(sorted(ARCHITECTURES)[:3])
    sweep = folder / "bench72.yaml"
    sweep.write_text(
        "# Benchmark grid: how fast is planning and submitting a study-sized sweep?\n"
        "name: bench72\n"
        f"params:\n  arch: {archs}\n  size: 14m,31m,70m,160m\n  seed: range(0,6)\n"
        f"fixed:\n  results_dir: {folder / 'results'}\n  train.max_steps: 100\n"
    )
    return sweep


def sbatch_shim(folder: Path, log: Path) -> Path:
    real = shutil.which("sbatch")
    if real is None:
        sys.exit("no sbatch on PATH: start a cluster first (slurm/local_cluster/start)")
    shim_dir = folder / "shim"
    shim_dir.mkdir()
    shim = shim_dir / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return shim_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/sweep_submit.json"))
    parser.add_argument("--cluster", default="slurm_local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweep = write_grid(folder)
        log = folder / "sbatch.log"
        env = {**os.environ, "PATH": f"{sbatch_shim(folder, log)}:{os.environ['PATH']}"}
        code = (
            "import time, sys; t0 = time.perf_counter();"
            "from parcae_runner.launch.sweep_file import load_sweep;"
            "from parcae_runner.launch.plan import plan_sweep;"
            "from parcae_runner.launch.submit import job_step, launch_sweep;"
            "t1 = time.perf_counter();"
            f"s = load_sweep({str(sweep)!r}); extra = ['cluster={args.cluster}'];"
            "runs = plan_sweep(s, extra); t2 = time.perf_counter();"
            "jobs = launch_sweep(s, runs, extra, hold=True, job=job_step); t3 = time.perf_counter();"
            "print(len(runs), len(jobs), t1 - t0, t2 - t1, t3 - t2)"
        )
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
        process_wall = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
        n_runs, n_jobs, t_import, t_plan, t_submit = out.stdout.split()
        record = json.loads((folder / "results" / "bench72" / "sweep.json").read_text())
        array_ids = sorted({j.split("_")[0] for j in record["jobs"].values()})
        subprocess.run(["scancel", *array_ids], check=False)
        calls = log.read_text().splitlines() if log.exists() else []
    report = {
        "benchmark": "sweep_submit",
        "cluster": args.cluster,
        "grid": "3 architectures x 4 sizes x 6 seeds",
        "runs_planned": int(n_runs),
        "runs_submitted": int(n_jobs),
        "plan_s": float(t_plan),
        "submit_s": float(t_submit),
        "plan_plus_submit_s": float(t_plan) + float(t_submit),
        "import_s": float(t_import),
        "process_wall_s": process_wall,
        "sbatch_calls": len(calls),
        "array_jobs": array_ids,
        "target": "plan + submit < 5 s with one sbatch call",
    }
    summary = (
        f"{report['runs_planned']} runs: plan {report['plan_s']:.2f} s + submit {report['submit_s']:.2f} s "
        f"= {report['plan_plus_submit_s']:.2f} s; {report['sbatch_calls']} sbatch call(s); "
        f"process wall {process_wall:.2f} s"
    )
    write_report(args.out, report, summary)


if __name__ == "__main__":
    main()
