"""Containers: the command one Slurm task runs in each mode, and which image a run used.

Modes (``CONTAINER=`` or the cluster profile's ``container``; the image from ``IMAGE=`` or ``image``):

- ``none``: the cluster's own Python runs ``parcae_runner.cli train``;
- ``pyxis``: ``srun --container-image=<image> --container-mounts=...`` (enroot, through Slurm's pyxis plugin);
- ``apptainer``: ``apptainer exec --nv --bind ... <image> parcae-runner train``;
- ``docker``: ``docker run --gpus <the job's GPUs> --user <uid>:<gid> ... <image> train``.

The checkout, the results root, the data cache and the config tree are mounted at their own paths. Secrets such as
``WANDB_API_KEY`` pass by name as environment variables only: their values never appear on a command line, in a
file written here, or in the image.

Nothing of Slurm is inside the image: in a container mode the job script, outside, passes the ``SLURM_*``
environment in, and does the requeue itself once the run has checkpointed (:data:`REQUEUE_ENV`); the one Slurm
question asked inside, ``scontrol show job`` (codecarbon sizes the allocation with it), the image's
``docker/scontrol`` answers from what the job script read outside (:data:`JOB_INFO_ENV`). For ``docker``
the container is not a child of the Slurm step, so signals reach it through the ``docker run`` client:
``--sig-proxy`` forwards them, ``--init`` (tini as PID 1) hands them to the run, and every container is labelled
with its job id so that the job script can remove one left behind by a killed client.

Provenance: the job script resolves the image's digest once (``docker image inspect`` on the node for ``docker``,
the ``@sha256:`` of a pinned reference otherwise), runs that exact image, and passes reference and digest in as
``PARCAE_IMAGE`` / ``PARCAE_IMAGE_DIGEST``; the run records them, with the build facts the image carries
(``$PARCAE_IMAGE_INFO``: commit, lock hash, base), in ``run.json`` (``runs.provenance.runtime_info``).
``sweep.json`` records the profile's image and digest at submission (:func:`image_record`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from parcae_runner.config.schema import Container

# the environment a run reads its container provenance from (runs.provenance.runtime_info reads it)
from parcae_runner.runs.provenance import DIGEST_ENV, IMAGE_ENV, MODE_ENV, REQUEUE_BY_JOB_SCRIPT, REQUEUE_ENV

CONTAINER_MODES = tuple(m.value for m in Container)
# environment passed into a container by name only (values never land in a file or an image)
PASS_ENV = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_ENTITY", "WANDB_PROJECT", "HF_HOME", "HF_TOKEN", "USER")
# `scontrol show job $SLURM_JOB_ID` as read outside, for the image's docker/scontrol (codecarbon asks it)
JOB_INFO_ENV = "PARCAE_SLURM_JOB_INFO"
# what the job script tells the run inside a docker container (pyxis and apptainer pass the environment through)
RUN_ENV = (MODE_ENV, IMAGE_ENV, DIGEST_ENV, REQUEUE_ENV, JOB_INFO_ENV, "PARCAE_CONFIG_DIR")
# label on every container the docker mode starts, value: the Slurm job id
JOB_LABEL = "parcae.slurm-job"
# per-task Slurm variables a docker container needs (Lightning's SLURMEnvironment reads ranks from them); the
# batch step may lack them, so they are named here as well as taken from the environment
SLURM_TASK_ENV = (
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
    "SLURM_STEP_GPUS",
    "SLURM_STEP_NODELIST",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_NTASKS",
    "SLURM_TASKS_PER_NODE",
    "SLURM_LAUNCH_NODE_IPADDR",
    "SLURMD_NODENAME",
    "SLURM_GTIDS",
    "SLURM_TASK_PID",
)


def _digest_in_reference(image: str) -> str | None:
    _, sep, digest = image.partition("@")
    return digest if sep and digest.startswith("sha256:") else None


def _output_of(cmd: list[str]) -> str | None:
    """The standard output of ``cmd``, or None when it cannot run, times out or fails."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def docker_inspect(image: str) -> dict[str, Any] | None:
    """``docker image inspect`` of a local image, or None (no docker, no such image, no daemon)."""
    out = _output_of(["docker", "image", "inspect", image])
    found = json.loads(out) if out is not None else None
    return found[0] if found else None


def resolve_digest(mode: str, image: str | None) -> str | None:
    """The digest that identifies ``image``: for docker the local image id (``sha256:...`` of its config, what
    ``docker run`` runs), else the ``@sha256:`` of a reference pinned by digest; None where it cannot be known here
    (a tag for pyxis or apptainer: pin those by digest)."""
    if not image or mode == Container.NONE:
        return None
    if mode == Container.DOCKER:
        found = docker_inspect(image)
        if found is not None:
            return found["Id"]
    return _digest_in_reference(image)


def image_record(mode: str, image: str | None) -> dict[str, Any] | None:
    """What ``sweep.json`` records of the image a profile names (None for ``container: none``)."""
    if mode == Container.NONE:
        return None
    return {"mode": mode, "image": image, "digest": resolve_digest(mode, image)}


def provenance_env(mode: str, image: str, digest: str | None) -> dict[str, str]:
    """The environment that tells a run in the container which image it runs in, and who requeues it."""
    env = {MODE_ENV: mode, IMAGE_ENV: image, REQUEUE_ENV: REQUEUE_BY_JOB_SCRIPT}
    if digest:
        env[DIGEST_ENV] = digest
    return env


def slurm_job_info(job_id: str | None) -> str | None:
    """``scontrol show job`` of this job, read outside the container for the image's ``scontrol`` to answer."""
    if not job_id:
        return None
    out = _output_of(["scontrol", "show", "job", job_id])
    return (out or "").strip() or None


def pyxis_image(image: str) -> str:
    """A registry reference as pyxis/enroot spell it: ``registry.example.org#team/parcae-runner@sha256:...``
    (enroot reads a host before the first ``/`` as part of a Docker Hub name); paths and such names unchanged."""
    host, sep, rest = image.partition("/")
    registry = sep and ("." in host or ":" in host or host == "localhost")
    if "#" in image or image.startswith((".", "/")) or not registry:
        return image
    return f"{host}#{rest}"


def job_gpus() -> str | None:
    """The GPUs Slurm gave this job as host indices (the docker daemon sees the whole node), else None."""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(name)
        if value is not None:
            return value
    return None


def bind_paths(paths: list[str | Path | None]) -> list[str]:
    """Absolute directories to mount, each once, and none inside another that is already mounted."""
    out: list[str] = []
    for p in sorted({str(Path(p).absolute()) for p in paths if p}):
        if any(c in p for c in ":,"):
            raise ValueError(f"{p}: a path with ':' or ',' cannot be mounted into a container")
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def slurm_env_names() -> list[str]:
    names = {n for n in os.environ if n.startswith(("SLURM_", "SLURMD_"))} | set(SLURM_TASK_ENV)
    return sorted(names)


def container_command(
    mode: str,
    image: str | None,
    workdir: str,
    train_args: list[str],
    mounts: list[str] | None = None,
    gpus: str | None = None,
    env_names: list[str] | None = None,
    python: str | None = None,
) -> list[str]:
    """The argv that ``srun`` runs for one task: ``parcae-runner train ...`` in the chosen container.

    ``mounts``: directories mounted at their own path (``workdir`` always is); ``gpus``: for docker, ``all``, a
    comma-separated list of host GPU indices, or None for none; ``env_names``: variables passed into a docker
    container by name (pyxis and apptainer pass the task's environment through).
    """
    if mode == Container.NONE:
        return [python or sys.executable, "-m", "parcae_runner.cli", "train", *train_args]
    if not image:
        raise ValueError(f"CONTAINER={mode} needs an image: set IMAGE=... or cluster.image")
    binds = bind_paths([workdir, *(mounts or [])])
    if mode == Container.PYXIS:
        # pyxis flags belong to srun itself; pyxis does not run the image's entrypoint, so name the command
        return [
            f"--container-image={pyxis_image(image)}",
            f"--container-mounts={','.join(f'{p}:{p}' for p in binds)}",
            f"--container-workdir={workdir}",
            "parcae-runner",
            "train",
            *train_args,
        ]
    if mode == Container.APPTAINER:
        return [
            "apptainer",
            "exec",
            "--nv",
            "--bind",
            ",".join(f"{p}:{p}" for p in binds),
            "--pwd",
            workdir,
            image,
            "parcae-runner",
            "train",
            *train_args,
        ]
    if mode == Container.DOCKER:
        names = sorted(set(PASS_ENV) | set(RUN_ENV) | set(env_names or ()))
        gpu_flags = [] if gpus is None else ["--gpus", "all" if gpus == "all" else f'"device={gpus}"']
        groups = [a for g in sorted(set(os.getgroups()) - {os.getgid()}) for a in ("--group-add", str(g))]
        return [
            "docker",
            "run",
            "--rm",
            # tini as PID 1: the run gets the signals the client forwards (USR1: checkpoint, TERM: stop)
            "--init",
            "--sig-proxy=true",
            "--label",
            f"{JOB_LABEL}={os.environ.get('SLURM_JOB_ID', 'none')}",
            # multi-node DDP (NCCL, the rendezvous address) and shared memory as on the host
            "--network=host",
            "--ipc=host",
            *gpu_flags,
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            *groups,
            *[a for p in binds for a in ("-v", f"{p}:{p}")],
            "-w",
            workdir,
            *[a for name in names for a in ("-e", name)],
            image,
            "train",
            *train_args,
        ]
    raise ValueError(f"CONTAINER={mode}: choose one of {', '.join(CONTAINER_MODES)}")


def remove_job_containers(job_id: str) -> list[str]:
    """Remove docker containers this job started that outlived their client (e.g. ``docker run`` was killed)."""
    try:
        ps = ["docker", "ps", "-q", "--filter", f"label={JOB_LABEL}={job_id}"]
        out = subprocess.run(ps, capture_output=True, text=True, timeout=30)
        ids = out.stdout.split() if out.returncode == 0 else []
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ids
