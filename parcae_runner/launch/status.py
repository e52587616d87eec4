"""Watch and repair a sweep: one table from Slurm and the run directories; cancel; resubmit.

Job state comes from ``squeue`` while a job is queued or running, from ``sacct`` when the
cluster keeps accounting, and otherwise from the run directory (``run.json``), which every
attempt updates; so the table is right with and without slurmdbd.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from parcae_runner.runs import RunDirectory, RunStatus, SweepRecord
from parcae_runner.runs.record import NEEDS_RESUBMIT


def _run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None


def queued_jobs() -> dict[str, dict[str, str]]:
    """Every job Slurm holds now: id (``<array>_<task>`` for array tasks) -> state and reason."""
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r"])
    if out is None or out.returncode != 0:
        return {}
    jobs = {}
    for line in out.stdout.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        jobs[job.strip()] = {"state": state.strip(), "reason": reason.strip()}
    return jobs


def accounted_states(job_ids: list[str]) -> dict[str, str]:
    """Final states from accounting (sacct), or {} when the cluster keeps none."""
    if not job_ids:
        return {}
    out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(sorted(set(job_ids)))])
    if out is None or out.returncode != 0:
        return {}
    return dict(line.split("|")[:2] for line in out.stdout.splitlines() if "|" in line)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_rows(root: Path) -> list[dict[str, Any]]:
    """One dict per run of the sweep at ``root`` (``results/<sweep>``)."""
    record = SweepRecord.read(root)
    jobs = record.jobs
    queued = queued_jobs()
    accounted = accounted_states([j for j in jobs.values() if not j.startswith("local")])
    rows = []
    for name in record.runs:
        run_dir = RunDirectory(root / name)
        run = run_dir.read_run()
        job = jobs.get(name, "-")
        if job in queued:
            slurm = queued[job]["state"] + (
                f" ({queued[job]['reason']})" if queued[job]["reason"] not in ("None", "") else ""
            )
        else:
            slurm = accounted.get(job, "-")
        train = [r for r in run_dir.read_metrics() if "train/loss" in r] if run_dir.path.exists() else []
        last = train[-1] if train else {}
        running = run.status == RunStatus.RUNNING
        step = run.step if run.step is not None and not running else last.get("step", 0)
        max_steps = run.max_steps
        tokens_per_s = last.get("train/tokens_per_s")
        eta = None
        if tokens_per_s and max_steps and run.tokens_per_step and running:
            eta = (max_steps - step) * run.tokens_per_step / tokens_per_s
        status = run.status or RunStatus.PENDING
        if status in (RunStatus.RUNNING, RunStatus.REQUEUED) and job not in queued and not job.startswith("local"):
            # its job is gone without writing a final status (killed hard, node failure)
            status = RunStatus.LOST
        rows.append(
            {
                "run": name,
                "job": job,
                "slurm": slurm,
                "status": status,
                "attempts": run.attempts,
                "step": step,
                "max_steps": max_steps,
                "loss": last.get("train/loss"),
                "val_loss": run.final_val_loss,
                "tokens_per_s": tokens_per_s,
                "eta_s": eta,
                "energy_kwh": run.energy_kwh or 0.0,
                "in_queue": job in queued,
            }
        )
    return rows


def format_rows(name: str, rows: list[dict[str, Any]]) -> str:
    header = ("run", "job", "slurm", "status", "attempt", "step", "loss", "tok/s", "ETA", "kWh")
    table = [header]
    for r in rows:
        table.append(
            (
                r["run"],
                r["job"],
                r["slurm"],
                r["status"],
                str(r["attempts"]),
                f"{r['step']}/{r['max_steps'] or '?'}",
                f"{r['loss']:.3f}" if r["loss"] is not None else "-",
                f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-",
                _eta(r["eta_s"]),
                f"{r['energy_kwh']:.4g}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    done = sum(r["status"] == RunStatus.DONE for r in rows)
    lines.insert(0, f"sweep {name}: {done}/{len(rows)} done  ({time.strftime('%Y-%m-%d %H:%M:%S')})")
    return "\n".join(lines)


def needs_resubmit(row: dict[str, Any]) -> bool:
    """Failed, cancelled or lost: not done, and no job of it left in the queue."""
    if row["in_queue"] or row["status"] == RunStatus.DONE:
        return False
    return row["status"] in (*NEEDS_RESUBMIT, RunStatus.LOST, RunStatus.PENDING)


def cancel(root: Path) -> list[str]:
    """scancel every queued job of the sweep; returns the ids cancelled."""
    record = SweepRecord.read(root)
    queued = queued_jobs()
    ids = sorted({j for j in record.jobs.values() if j in queued})
    if ids:
        subprocess.run(["scancel", *ids], check=True)
    return ids
