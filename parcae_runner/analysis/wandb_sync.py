"""Upload a sweep's offline wandb runs, skipping those already uploaded.

An offline run lives in ``<run_dir>/wandb/offline-run-*/run-<id>.wandb``; after ``wandb sync``
uploads it, wandb leaves ``run-<id>.wandb.synced`` beside it, which is how a run already uploaded
is recognised. Without ``WANDB_API_KEY`` nothing is uploaded: the command says what it would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from parcae_runner.runs.record import RUN_FILE
from parcae_runner.runs.wandb_offline import find_run_files
from parcae_runner.util.log import log


@dataclass
class SyncPlan:
    to_upload: list[Path]
    already_synced: list[Path]


def plan_sync(sweep_root: Path) -> SyncPlan:
    """Offline run folders of every run directory under ``sweep_root``, split by upload state."""
    todo: list[Path] = []
    done: list[Path] = []
    for run_dir in sorted(p.parent for p in sweep_root.glob(f"*/{RUN_FILE}")):
        for run_file in find_run_files(run_dir):
            (done if run_file.with_suffix(".wandb.synced").exists() else todo).append(run_file.parent)
    return SyncPlan(todo, done)


def sync_sweep(sweep_root: Path, dry_run: bool = False) -> SyncPlan:
    """Upload what is not uploaded yet (when a key is present and not ``dry_run``); returns the plan."""
    plan = plan_sync(sweep_root)
    log(f"{len(plan.to_upload)} offline wandb runs to upload, {len(plan.already_synced)} already uploaded")
    if not plan.to_upload:
        return plan
    if dry_run or not os.environ.get("WANDB_API_KEY"):
        reason = "dry run" if dry_run else "WANDB_API_KEY is not set"
        for folder in plan.to_upload:
            print(f"  would upload {folder}", file=sys.stderr)
        log(f"nothing uploaded ({reason}); set WANDB_API_KEY in the environment to upload")
        return plan
    wandb = Path(sys.executable).with_name("wandb")
    subprocess.run([str(wandb) if wandb.exists() else "wandb", "sync", *map(str, plan.to_upload)], check=True)
    return plan
