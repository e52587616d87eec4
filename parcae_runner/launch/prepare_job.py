"""``parcae-runner prepare``: tokenise a corpus once, here or as a CPU job on the cluster, so GPU jobs never do.

With a Slurm profile (``cluster=slurm_*``) the preparation is one CPU-only job (no GPUs asked, the profile's
partition, CPUs, memory and time), submitted through submitit; this command waits for it and prints where the data
went. Everything that can be wrong with the input is checked here first, before anything is written or submitted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.schema import DataConfig, Launcher
from parcae_runner.data import plan_data, prepare_data
from parcae_runner.util.log import log


def _prepare(data: dict[str, Any]) -> str:
    """The job's payload: prepare and return the directory (runs on the compute node)."""
    return str(prepare_data(DataConfig(**data)).dir)


def _slurm_parameters(c: DictConfig) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": "parcae-prepare",
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": c.cpus_per_task,
        "mem_gb": c.mem_gb,
        "timeout_min": c.time_min,
        "slurm_partition": c.partition,
    }
    for key in ("account", "qos"):
        if c.get(key):
            params[f"slurm_{key}"] = c[key]
    return params


def prepare_command(cfg: DictConfig) -> Path:
    """Check, then prepare ``cfg.data`` (locally or as one Slurm CPU job); returns the prepared directory."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    plan = plan_data(DataConfig(**data))  # type: ignore[arg-type]
    if cfg.cluster.launcher != Launcher.SLURM:
        return prepare_data(plan.cfg, plan=plan).dir
    import submitit

    folder = Path(plan.cfg.cache_dir).expanduser() / ".submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    executor.update_parameters(**_slurm_parameters(cfg.cluster))
    job = executor.submit(_prepare, data)
    log(f"preparing {plan.source.describe()} as Slurm job {job.job_id} (log: {folder / str(job.job_id)}); waiting")
    # while polling, submitit warns on every call where Slurm has no accounting (sacct); the job's state is enough
    logging.getLogger("submitit").setLevel(logging.ERROR)
    return Path(job.result())
