"""What ``sbatch launch_job.slurm`` runs inside the allocation.

``CONFIG=launch_configs/<preset>.yaml sbatch launch_job.slurm [overrides]`` -> the batch script
calls ``python -m parcae_runner.launch.job_script [overrides]``, which composes the config (to
learn the run directory and the cluster profile) and then runs one task per GPU with ``srun``,
inside the container the profile (or ``CONTAINER=``/``IMAGE=``) names, with the step's output
appended to ``<run_dir>/logs/slurm-<job>.out``. The same command runs again after a requeue
and resumes from the newest checkpoint.

Container modes: ``none`` (the cluster's Python), ``pyxis`` (``srun --container-image``),
``apptainer`` (``apptainer exec --nv``), ``docker`` (``docker run --gpus all``). The working
directory (checkout, data cache, results) is mounted at the same path inside; secrets such as
``WANDB_API_KEY`` pass as environment variables only.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from omegaconf import DictConfig

CONTAINER_MODES = ("none", "pyxis", "apptainer", "docker")
# environment passed into a container by name only (values never land in a file or an image)
PASS_ENV = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_ENTITY", "WANDB_PROJECT", "HF_HOME")


def container_command(mode: str, image: str | None, workdir: str, train_args: list[str]) -> list[str]:
    """The argv that ``srun`` runs for one task: ``parcae-runner train ...`` in the chosen container."""
    if mode == "none":
        return [sys.executable, "-m", "parcae_runner.cli", "train", *train_args]
    if not image:
        raise ValueError(f"CONTAINER={mode} needs an image: set IMAGE=... or cluster.image")
    if mode == "pyxis":
        # pyxis flags belong to srun itself; the image's entrypoint is parcae-runner
        return [
            f"--container-image={image}",
            f"--container-mounts={workdir}:{workdir}",
            f"--container-workdir={workdir}",
            "parcae-runner",
            "train",
            *train_args,
        ]
    if mode == "apptainer":
        return [
            "apptainer",
            "exec",
            "--nv",
            "--bind",
            f"{workdir}:{workdir}",
            "--pwd",
            workdir,
            image,
            "parcae-runner",
            "train",
            *train_args,
        ]
    if mode == "docker":
        env = [a for name in PASS_ENV if name in os.environ for a in ("-e", name)]
        devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = ["--gpus", f'"device={devices}"' if devices else "all"] if devices != "" else []
        return [
            "docker",
            "run",
            "--rm",
            *gpus,
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            "-v",
            f"{workdir}:{workdir}",
            "-w",
            workdir,
            *env,
            image,
            "train",
            *train_args,
        ]
    raise ValueError(f"CONTAINER={mode}: choose one of {', '.join(CONTAINER_MODES)}")


def srun_command(cfg: DictConfig, run_dir: Path, train_args: list[str], mode: str, image: str | None) -> list[str]:
    """``srun`` with one task per GPU (at least one per node) and the step log under the run dir."""
    c = cfg.cluster
    log = run_dir / "logs" / "slurm-%j.out"
    srun = [
        "srun",
        f"--ntasks-per-node={max(1, c.gpus_per_node)}",
        f"--output={log}",
        "--open-mode=append",
        "--kill-on-bad-exit=1",
    ]
    return [*srun, *container_command(mode, image, os.getcwd(), train_args)]


def main(argv: list[str] | None = None) -> int:
    from parcae_runner.cli import EXIT_BAD_INPUT, resolve_config_arg
    from parcae_runner.config import ConfigError, ConfigErrors, compose_run_config
    from parcae_runner.config.validate import validate_run_config
    from parcae_runner.train.run_dir import RunDirectory

    overrides = list(sys.argv[1:] if argv is None else argv)
    config_name = resolve_config_arg(os.environ.get("CONFIG", "config"))
    try:
        cfg = compose_run_config(overrides, config_name=config_name)
        validate_run_config(cfg)
    except (ConfigError, ConfigErrors) as exc:
        print(f"parcae-runner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    mode = os.environ.get("CONTAINER") or cfg.cluster.container
    image = os.environ.get("IMAGE") or cfg.cluster.image
    run_dir = RunDirectory.for_config(cfg).path
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    cmd = srun_command(cfg, run_dir, ["--config-name", config_name, *overrides], mode, image)
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    print(f"[parcae-runner] job {os.environ.get('SLURM_JOB_ID')} (restart {restart}): {shlex.join(cmd)}", flush=True)
    os.execvp(cmd[0], cmd)
    return 1


if __name__ == "__main__":
    sys.exit(main())
