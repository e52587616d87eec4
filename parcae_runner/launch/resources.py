"""A cluster profile's resources as ``sbatch`` flags, and the check that a job got them.

``parcae-runner launch`` passes :func:`sbatch_flags` on the command line, so the job gets what the profile
asks for rather than the static ``#SBATCH`` header of ``launch_job.slurm``. A plain ``sbatch launch_job.slurm``
still works; the job script then compares the allocation (:func:`allocation_mismatches`) with the profile before
anything trains and, on a mismatch, names the flags to use (exit 2).
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from parcae_runner.config.errors import ClusterRefused, ConfigError
from parcae_runner.config.schema import Launcher
from parcae_runner.config.validate import tasks_per_node

JOB_SCRIPT = "launch_job.slurm"


def _flag(name: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    return f"--{name}" if value is True else f"--{name}={value}"


def sbatch_flags(c: DictConfig) -> list[str]:
    """The profile's resources as ``sbatch`` options (partition, account, qos, constraint, nodes, GPUs per node,
    tasks per node, CPUs per task, memory, time, requeue, signal), then the profile's ``sbatch_extra``."""
    flags: dict[str, Any] = {
        "partition": c.get("partition"),
        "account": c.get("account"),
        "qos": c.get("qos"),
        "constraint": c.get("constraint"),
        "nodes": c.nodes,
        "ntasks-per-node": tasks_per_node(c),
        "gpus-per-node": c.gpus_per_node or None,
        "cpus-per-task": c.cpus_per_task,
        # whole megabytes: sbatch takes no fractions, and a rounded-down figure would be less than the profile asks
        "mem": f"{math.ceil(float(c.mem_gb) * 1024)}M",
        "time": int(c.time_min),
        "requeue": True,
        "signal": f"USR1@{c.signal_delay_s}",
    }
    flags.update(dict(c.get("sbatch_extra") or {}))
    return [f for f in (_flag(k, v) for k, v in flags.items()) if f is not None]


def _gpus_on_node(env: Mapping[str, str]) -> int:
    if env.get("SLURM_GPUS_ON_NODE"):
        return int(env["SLURM_GPUS_ON_NODE"])
    gpus = env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS") or ""
    return len([g for g in gpus.split(",") if g])


def _tasks_per_node(env: Mapping[str, str]) -> int | None:
    """``SLURM_NTASKS_PER_NODE`` (set when asked for), else the tasks of this node (``SLURM_TASKS_PER_NODE``
    reads e.g. ``2(x3)`` or ``2,1``)."""
    value = env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    if not value:
        return None
    return int(value.split(",")[0].split("(")[0])


def allocation_mismatches(c: DictConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """What the job's allocation (Slurm's environment in the batch script) lacks against the profile:
    ``["nodes: got 1, the profile wants 2", ...]``; empty when it fits, or outside a Slurm job."""
    env = os.environ if env is None else env
    if not env.get("SLURM_JOB_ID"):
        return []
    got_nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    wanted = {
        "nodes": (got_nodes, int(c.nodes)),
        "tasks per node": (_tasks_per_node(env), tasks_per_node(c)),
        "GPUs on the node": (_gpus_on_node(env), int(c.gpus_per_node)),
    }
    return [f"{what}: got {got}, the profile wants {want}" for what, (got, want) in wanted.items() if got != want]


def mismatch_message(c: DictConfig, mismatches: list[str], config: str, overrides: list[str]) -> str:
    """One error naming what differs and the exact command that asks for the profile's resources."""
    args = f" {shlex.join(overrides)}" if overrides else ""
    return (
        f"this job's allocation does not match cluster={c.name} ({'; '.join(mismatches)}); nothing was trained. "
        f"Submit it with the profile's flags: CONFIG={shlex.quote(config)} sbatch {shlex.join(sbatch_flags(c))} "
        f"{JOB_SCRIPT}{args} (or: parcae-runner launch --config {shlex.quote(config)}{args})"
    )


def job_script_path() -> Path:
    """``launch_job.slurm`` of the checkout being run: the working directory's, else the one beside the package."""
    for candidate in (Path.cwd() / JOB_SCRIPT, Path(__file__).resolve().parents[2] / JOB_SCRIPT):
        if candidate.is_file():
            return candidate
    raise ConfigError("launch", JOB_SCRIPT, "not found in the working directory: run from the repository root")


def sbatch_command(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """``sbatch <the profile's flags> launch_job.slurm <overrides>``."""
    c = cfg.cluster
    if c.launcher != Launcher.SLURM:
        raise ConfigError("cluster", c.name, "launch submits a Slurm job: choose a Slurm profile (cluster=slurm_a100)")
    script = job_script_path()
    shown = script.relative_to(Path.cwd()) if script.is_relative_to(Path.cwd()) else script
    return ["sbatch", "--parsable", *sbatch_flags(c), str(shown), *overrides]


def submit(cfg: DictConfig, config: str, overrides: list[str]) -> tuple[list[str], str]:
    """Submit one run with the profile's resources; returns the sbatch command line and the job id.
    ``config`` is the preset as the user gave it (a name or a file): the job composes the same config."""
    cmd = sbatch_command(cfg, overrides)
    env = {**os.environ, "CONFIG": config}
    # the job runs this interpreter (and so this install) unless PYTHON says otherwise
    env.setdefault("PYTHON", sys.executable)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    except FileNotFoundError as exc:
        raise ClusterRefused("sbatch not found: submit from a Slurm login node (or start slurm/local_cluster)") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClusterRefused("sbatch did not answer in 120 s: is slurmctld reachable (sinfo)?") from exc
    if done.returncode != 0:
        raise ClusterRefused(f"sbatch refused the job (exit {done.returncode}): {done.stderr.strip()}")
    return cmd, done.stdout.strip().split(";")[0]
