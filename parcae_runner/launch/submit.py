"""Launch a planned sweep: one Slurm job array through submitit, or local processes.

Why not hydra-submitit-launcher: its last release (1.2.0, 2022) blocks until every job has
finished (a sweep would need the login shell open for days), cannot pass ``srun_args`` or a
container-wrapped ``python``, and re-raises the first failure. Here Hydra composes and validates
every point (``plan``), and submitit's ``map_array`` submits them as one ``sbatch --array`` and
returns at once; the jobs carry only their override lists, so a job composes its own config on
the node, with the code of the commit recorded in ``sweep.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from parcae_runner.config.schema import Launcher
from parcae_runner.config.validate import tasks_per_node
from parcae_runner.launch.container import image_record
from parcae_runner.launch.plan import PlannedRun
from parcae_runner.launch.sweep_file import Sweep
from parcae_runner.runs import RunStatus, SweepRecord
from parcae_runner.runs.provenance import git_commit
from parcae_runner.util.log import log

FINISHED = (RunStatus.DONE,)
# what one Slurm array task runs: (the point's overrides, the preset) -> its run directory
Job = Callable[[list[str], str], str]


def _slurm_parameters(c: DictConfig, name: str, hold: bool) -> dict[str, Any]:
    gpus = c.gpus_per_node
    extra: dict[str, Any] = {
        "requeue": True,
        # USR1, not submitit's USR2: parcae_runner.train.requeue owns requeueing (see there)
        "signal": f"USR1@{c.signal_delay_s}",
        "open-mode": "append",
        **dict(c.sbatch_extra),
    }
    if hold:
        extra["hold"] = True
    params: dict[str, Any] = {
        "name": name,
        "nodes": c.nodes,
        "tasks_per_node": tasks_per_node(c),
        "cpus_per_task": c.cpus_per_task,
        "mem_gb": c.mem_gb,
        "timeout_min": c.time_min,
        "slurm_partition": c.partition,
        "slurm_array_parallelism": c.array_parallelism,
        "slurm_additional_parameters": extra,
    }
    if gpus:
        params["gpus_per_node"] = gpus
    for key in ("account", "qos", "constraint"):
        if c.get(key):
            params[f"slurm_{key}"] = c[key]
    return params


def job_step(overrides: list[str], config_name: str = "config") -> str:
    """What one Slurm array task runs: the job step of ``launch_job.slurm`` (``parcae_runner.launch.job_script``),
    so that an array task gets the same allocation check, container (``CONTAINER``/``IMAGE`` or the profile's),
    ``srun`` with one task per GPU, step log under the run directory and requeue handling as a single job.
    submitit runs this in the batch shell (``use_srun=False``); the job script starts the step. Returns the run
    directory; raises when the step failed, so that submitit records the task as failed."""
    env = {**os.environ, "CONFIG": config_name}
    env.setdefault("PYTHON", sys.executable)
    cmd = [env["PYTHON"], "-m", "parcae_runner.launch.job_script", *overrides]
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        raise RuntimeError(f"the job step ended with exit code {rc}: {' '.join(cmd)}")
    from parcae_runner.config import compose_run_config
    from parcae_runner.config.presets import resolve_config_arg
    from parcae_runner.runs import RunDirectory

    cfg = compose_run_config(overrides, config_name=resolve_config_arg(config_name))
    return str(RunDirectory.for_config(cfg).path)


def submit_slurm(sweep: Sweep, runs: list[PlannedRun], root: Path, hold: bool, job: Job) -> dict[str, str]:
    """Submit ``runs`` as one job array of ``job`` tasks; returns run name -> Slurm job id (``<array>_<task>``)."""
    import submitit

    executor = submitit.AutoExecutor(folder=root / ".submitit" / "%j", cluster="slurm")
    executor.update_parameters(**_slurm_parameters(runs[0].cfg.cluster, f"parcae-{sweep.name}", hold))
    if job is job_step:
        # the task starts its own step (srun, in the container): submitit's python runs in the batch shell
        executor.update_parameters(slurm_use_srun=False)
    jobs = executor.map_array(job, [r.point.overrides for r in runs], [sweep.preset] * len(runs))
    return {r.point.name: job.job_id for r, job in zip(runs, jobs, strict=True)}


def run_local(sweep: Sweep, runs: list[PlannedRun], root: Path) -> dict[str, str]:
    """Run ``runs`` as local processes, ``cluster.max_parallel`` at a time, and wait for them."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(runs)
    active: list[tuple[PlannedRun, subprocess.Popen, Any]] = []
    codes: dict[str, str] = {}
    limit = runs[0].cfg.cluster.max_parallel
    while pending or active:
        while pending and len(active) < limit:
            run = pending.pop(0)
            log_file = (logs / f"{run.point.name}.log").open("a")
            cmd = [
                sys.executable,
                "-m",
                "parcae_runner.cli",
                "train",
                "--config-name",
                sweep.preset,
                *run.point.overrides,
                "train.progress=false",
            ]
            log(f"{run.point.name}: started (log {log_file.name})")
            active.append((run, subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT), log_file))
        time.sleep(0.5)
        for item in list(active):
            run, proc, log_file = item
            if proc.poll() is not None:
                log_file.close()
                active.remove(item)
                codes[run.point.name] = f"local:{proc.returncode}"
                state = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode}, see {log_file.name})"
                left = len(pending) + len(active)
                log(f"{run.point.name}: {state}; {left} left")
    return codes


def _container_record(runs: list[PlannedRun], launcher: str) -> dict[str, Any] | None:
    """The image the runs are submitted to run in: on Slurm, ``CONTAINER=``/``IMAGE=`` (exported to the jobs,
    where the job script reads them) override the profile's."""
    if not runs:
        return None
    mode, image = runs[0].cfg.cluster.container, runs[0].cfg.cluster.image
    if launcher == Launcher.SLURM:
        mode, image = os.environ.get("CONTAINER") or mode, os.environ.get("IMAGE") or image
    return image_record(mode, image)


def record_submission(
    sweep: Sweep,
    runs: list[PlannedRun],
    root: Path,
    job_ids: dict[str, str],
    hold: bool,
    launcher: str,
    extra: list[str],
    new_submission: bool = True,
) -> SweepRecord:
    """Write ``results/<sweep>/sweep.json``: the grid, every submission's job ids, time and commit."""
    record = SweepRecord.read(root)
    record.data.update(
        name=sweep.name,
        file=str(sweep.path),
        variant=sweep.variant,
        question=sweep.question,
        preset=sweep.preset,
        params=sweep.params,
        fixed={k: str(v) for k, v in sweep.fixed.items()},
        cluster=runs[0].cfg.cluster.name if runs else record.cluster,
        launcher=launcher,
        overrides=list(extra),
        runs=[r.point.name for r in runs] + [n for n in record.runs if n not in {r.point.name for r in runs}],
    )
    record.data["jobs"] = {**record.jobs, **job_ids}
    if new_submission:
        record.data["submissions"] = [
            *record.submissions,
            {
                "time": time.time(),
                "hold": hold,
                "jobs": job_ids,
                **git_commit(),
                "host": os.uname().nodename,
                "container": _container_record(runs, launcher),
            },
        ]
    record.write()
    return record


def launch_sweep(
    sweep: Sweep,
    planned: list[PlannedRun],
    extra: list[str],
    hold: bool = False,
    only: set[str] | None = None,
    *,
    job: Job | None = None,
) -> dict[str, str]:
    """Submit every planned run that is not finished and not already queued (or only ``only``).

    Resubmitting a sweep is therefore safe: finished runs are skipped, unfinished ones resume
    from their newest checkpoint. Returns run name -> job id of what was submitted. ``job`` is what
    a Slurm array task runs (:func:`job_step`, the job step of ``launch_job.slurm``); local runs start the CLI.
    """
    from parcae_runner.launch.plan import results_root
    from parcae_runner.launch.status import queued_jobs

    root = results_root(planned)
    root.mkdir(parents=True, exist_ok=True)
    previous = SweepRecord.read(root).jobs
    queued = queued_jobs()
    todo = [
        r
        for r in planned
        if r.status not in FINISHED
        and previous.get(r.point.name) not in queued
        and (only is None or r.point.name in only)
    ]
    launcher = planned[0].cfg.cluster.launcher
    if not todo:
        log(f"nothing to submit: {len(planned)} runs are done or queued")
        record_submission(sweep, planned, root, {}, hold, launcher, extra)
        return {}
    if launcher == Launcher.SLURM:
        if job is None:
            raise ValueError("a Slurm sweep needs the job its array tasks run (job_step)")
        job_ids = submit_slurm(sweep, todo, root, hold, job)
        first = next(iter(job_ids.values())).split("_")[0]
        print(
            f"[parcae-runner] submitted {len(todo)} runs as Slurm job {first}"
            f"{' (held)' if hold else ''}; watch with: parcae-runner status {root}",
            file=sys.stderr,
        )
        record_submission(sweep, planned, root, job_ids, hold, launcher, extra)
    else:
        # recorded first so `parcae-runner status` works from another shell while the runs go on
        record_submission(sweep, planned, root, {r.point.name: "local" for r in todo}, hold, launcher, extra)
        job_ids = run_local(sweep, todo, root)
        record_submission(sweep, planned, root, job_ids, hold, launcher, extra, new_submission=False)
    return job_ids
