"""What ``sbatch launch_job.slurm`` runs inside the allocation.

``CONFIG=launch_configs/<preset>.yaml sbatch launch_job.slurm [overrides]`` -> the batch script
calls ``python -m parcae_runner.launch.job_script [overrides]``, which composes the config (to
learn the run directory and the cluster profile) and then runs one task per GPU with ``srun``,
inside the container the profile (or ``CONTAINER=``/``IMAGE=``) names, with the step's output
appended to ``<run_dir>/logs/slurm-<job>.out``. The same command runs again after a requeue
and resumes from the newest checkpoint.

Container modes (see :mod:`parcae_runner.launch.container`): ``none`` (the cluster's Python),
``pyxis`` (``srun --container-image``), ``apptainer`` (``apptainer exec --nv``), ``docker``
(``docker run --gpus <the job's GPUs>``). The working directory (checkout), the results root, the
data cache and the config tree are mounted at the same paths inside; secrets such as
``WANDB_API_KEY`` pass as environment variables only.

Requeue: this script stays the parent of ``srun``. At the time-limit signal (SIGUSR1) the run checkpoints and,
with ``none``, calls ``scontrol requeue`` itself; in a container there is no Slurm, so this script requeues the
job once the step has ended with the run's new attempt recorded as ``requeued``. When a rank is lost (killed by a
signal: a node failure, the OOM killer), ``srun --kill-on-bad-exit`` stops the other ranks and this script requeues
the job (at most ``cluster.max_requeues`` times); the requeued job resumes from the newest checkpoint.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from parcae_runner.config.schema import Container
from parcae_runner.launch import container
from parcae_runner.launch.container import CONTAINER_MODES, container_command
from parcae_runner.launch.resources import allocation_mismatches, mismatch_message, tasks_per_node
from parcae_runner.runs import RunDirectory, RunRecord, RunStatus
from parcae_runner.util.log import log


def container_mounts(cfg: DictConfig, config_dir: Path) -> list[str]:
    """Host paths a run reads or writes besides the working directory: results, data cache, config tree, inputs."""
    paths: list[str | Path | None] = [cfg.results_dir, cfg.data.cache_dir, config_dir]
    data_path = cfg.data.get("path")
    if data_path and data_path != "???" and Path(data_path).exists():
        paths.append(Path(data_path) if Path(data_path).is_dir() else Path(data_path).parent)
    init_from = cfg.train.get("init_from")
    if init_from and Path(init_from).exists():
        paths.append(init_from)
    if os.environ.get("HF_HOME"):
        paths.append(os.environ["HF_HOME"])
    return [str(Path(p).expanduser().absolute()) for p in paths if p]


def srun_command(
    cfg: DictConfig,
    run_dir: Path,
    train_args: list[str],
    mode: str,
    image: str | None,
    mounts: list[str] | None = None,
) -> list[str]:
    """``srun`` with one task per GPU (at least one per node) and the step log under the run dir."""
    c = cfg.cluster
    log = run_dir / "logs" / "slurm-%j.out"
    srun = [
        "srun",
        f"--ntasks-per-node={tasks_per_node(c)}",
        f"--output={log}",
        "--open-mode=append",
        "--kill-on-bad-exit=1",
    ]
    gpus = (container.job_gpus() or "all") if c.gpus_per_node else None
    task = container_command(
        mode,
        image,
        os.getcwd(),
        train_args,
        mounts=mounts,
        gpus=gpus,
        env_names=container.slurm_env_names(),
    )
    return [*srun, *task]


def _attempts(run_dir: Path) -> int:
    return RunRecord.read(run_dir).attempts


def lost_a_rank(rc: int, cancelled: bool) -> bool:
    """Whether the step ended because a task was killed by a signal (srun exits 128 + the signal: a node lost, the
    OOM killer, a SIGKILL), not because training failed (exit 1) or the job itself was cancelled (scancel, time
    limit: the job script got SIGTERM too)."""
    return rc > 128 and not cancelled


def _run_step(cmd: list[str], run_dir: Path, mode: str, max_requeues: int) -> int:
    """Run the step as a child, then do what its tasks cannot: clean up containers, requeue the job when the run
    asked to from inside a container, or when a rank was lost (``--kill-on-bad-exit`` then stops the others), at
    most ``cluster.max_requeues`` times; the requeued job resumes from the newest checkpoint."""
    from parcae_runner.train.requeue import requeue_job, slurm_job_id

    cancelled = False

    def note(signum, frame) -> None:
        # SIGTERM/SIGINT (scancel) reach the step's tasks too; wait for them to record their end
        nonlocal cancelled
        cancelled = cancelled or signum in (signal.SIGTERM, signal.SIGINT)
        log(f"job script: signal {signum}, waiting for the step")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, note)
    before = _attempts(run_dir)
    rc = subprocess.call(cmd)
    job = os.environ.get("SLURM_JOB_ID")
    if mode == Container.DOCKER and job:
        left = container.remove_job_containers(job)
        if left:
            log(f"removed containers left behind: {' '.join(left)}")
    record = RunRecord.read(run_dir)
    step_log = run_dir / "logs" / f"slurm-{job}.out"
    why = None
    if record.status == RunStatus.REQUEUED and record.attempts > before:
        why = "by the job script, outside"
    elif lost_a_rank(rc, cancelled) and record.status != RunStatus.DONE:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        if restarts >= max_requeues:
            log(f"job script: a rank was lost (step exit {rc}); not requeued: cluster.max_requeues={max_requeues}")
        else:
            why = f"a rank was lost (step exit {rc}), requeue {restarts + 1} of at most {max_requeues}"
    if why is not None:
        os.environ.pop(container.REQUEUE_ENV, None)
        if requeue_job():
            with step_log.open("a") as f:
                f.write(f"[parcae-runner] requeued Slurm job {slurm_job_id()} ({why})\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    from parcae_runner.config import ConfigError, ConfigErrors, compose_run_config, config_dir
    from parcae_runner.config.errors import EXIT_BAD_INPUT
    from parcae_runner.config.presets import resolve_config_arg
    from parcae_runner.train.preflight import preflight

    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        config_name = resolve_config_arg(os.environ.get("CONFIG", "config"))
        cfg = compose_run_config(overrides, config_name=config_name)
        preflight(cfg, "job")
        mode = os.environ.get("CONTAINER") or cfg.cluster.container
        image = os.environ.get("IMAGE") or cfg.cluster.image
        if mode not in CONTAINER_MODES:
            raise ConfigError("CONTAINER", mode, f"choose one of {', '.join(CONTAINER_MODES)}")
        if mode != Container.NONE and not image:
            raise ConfigError("IMAGE", image, f"CONTAINER={mode} needs an image: set IMAGE=... or cluster.image")
    except (ConfigError, ConfigErrors) as exc:
        print(f"parcae-runner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    # before anything is written: a job without the profile's nodes, tasks and GPUs must not train at all
    mismatches = allocation_mismatches(cfg.cluster)
    if mismatches:
        preset = os.environ.get("CONFIG", "config")
        print(f"parcae-runner: error: {mismatch_message(cfg.cluster, mismatches, preset, overrides)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run_dir = RunDirectory.for_config(cfg).path.absolute()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    train_args = ["--config-name", config_name, *overrides]
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    job = os.environ.get("SLURM_JOB_ID")
    if mode == Container.NONE:
        cmd = srun_command(cfg, run_dir, train_args, mode, image)
        print(f"[parcae-runner] job {job} (restart {restart}): {shlex.join(cmd)}", flush=True)
        return _run_step(cmd, run_dir, mode, int(cfg.cluster.max_requeues))

    # one digest for every task of this job, and the exact image it names (a tag may move while the job runs)
    digest = container.resolve_digest(mode, image)
    if mode == Container.DOCKER and digest is None:
        print(f"parcae-runner: error: docker has no image {image} on this node", file=sys.stderr)
        return EXIT_BAD_INPUT
    os.environ.update(container.provenance_env(mode, image, digest))
    job_info = container.slurm_job_info(job)
    if job_info:
        os.environ[container.JOB_INFO_ENV] = job_info
    # the config tree this script composed from; the run inside must compose the same config
    os.environ["PARCAE_CONFIG_DIR"] = str(config_dir())
    mounts = container_mounts(cfg, config_dir())
    for d in (cfg.results_dir, cfg.data.cache_dir):
        Path(d).expanduser().mkdir(parents=True, exist_ok=True)
    run_image = digest if mode == Container.DOCKER else image
    cmd = srun_command(cfg, run_dir, train_args, mode, run_image, mounts=mounts)
    print(
        f"[parcae-runner] job {job} (restart {restart}), image {image} ({digest or 'digest unknown'}): "
        f"{shlex.join(cmd)}",
        flush=True,
    )
    return _run_step(cmd, run_dir, mode, int(cfg.cluster.max_requeues))


if __name__ == "__main__":
    sys.exit(main())
