"""Where a run ran: hardware, container image, code commit. Recorded in ``run.json`` and ``sweep.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# what a run records about its container, set by the job script for the processes in the container
MODE_ENV, IMAGE_ENV, DIGEST_ENV = "PARCAE_CONTAINER", "PARCAE_IMAGE", "PARCAE_IMAGE_DIGEST"
# set to "job-script" where the job script outside the container requeues the job (no scontrol inside)
REQUEUE_ENV = "PARCAE_REQUEUE"
REQUEUE_BY_JOB_SCRIPT = "job-script"
# the image's own build facts (docker/Dockerfile writes the file and sets the variable)
IMAGE_INFO_ENV = "PARCAE_IMAGE_INFO"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_info() -> dict[str, Any] | None:
    """What ``run.json`` records of the container this process runs in; None outside any known image."""
    info: dict[str, Any] = {}
    if os.environ.get(MODE_ENV):
        info = {"mode": os.environ[MODE_ENV], "image": os.environ.get(IMAGE_ENV), "digest": os.environ.get(DIGEST_ENV)}
    built = os.environ.get(IMAGE_INFO_ENV)
    if built:
        try:
            info["build"] = json.loads(Path(built).read_text())
        except (OSError, ValueError):
            pass
    return info or None


def hardware_info(on_gpu: bool, devices: int, num_nodes: int) -> dict[str, Any]:
    """``run.json`` ``hardware``: the accelerator, its name, the world size and the software."""
    import torch

    return {
        "accelerator": "gpu" if on_gpu else "cpu",
        "device_name": torch.cuda.get_device_name(0) if on_gpu else cpu_model(),
        "devices": devices,
        "num_nodes": num_nodes,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "torch": torch.__version__,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "container": runtime_info(),
    }


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None values outside a checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
