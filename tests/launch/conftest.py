"""The local one-node Slurm cluster, started once per session and left running for the next tests and sessions."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from parcae_runner.launch.container import remove_job_containers

# development infrastructure beside its start/stop scripts, not part of the package: loaded by path
CLUSTER_PY = Path(__file__).resolve().parents[2] / "slurm" / "local_cluster" / "cluster.py"


def load_by_path(name: str, path: Path) -> ModuleType:
    """The module at ``path`` as ``name`` (once: a second call returns the loaded one)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    # registered before it runs, as an import would: its dataclasses look their module up in sys.modules
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


local_cluster = load_by_path("local_cluster", CLUSTER_PY)


@pytest.fixture(scope="session")
def slurm_cluster_session() -> local_cluster.ClusterInfo:
    """Start (or find) the local cluster; skip only where it cannot be had: not root, or Slurm not installable.

    It is not stopped afterwards: starting it again costs a few seconds, and a developer may be using it.
    """
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (apt-get, /etc/slurm, daemons)")
    try:
        return local_cluster.start()
    except local_cluster.SlurmInstallError as e:
        pytest.skip(f"Slurm is not installed and apt-get cannot install it: {e}")


def queued_jobs() -> set[str]:
    """Job ids in the queue (each task of an array by its own job id, which scancel and scontrol take)."""
    out = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, timeout=60)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


def describe_jobs(jobs: set[str]) -> str:
    """Each job's state and pending reason, and the tails of its batch log and of the step log the job script named:
    what a failed Slurm test needs to say why its job never got where the test waited for it."""
    parts = []
    for job in sorted(jobs, key=int):
        shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=60)
        fields = dict(f.split("=", 1) for f in shown.stdout.split() if "=" in f)
        parts.append(f"job {job}: {fields.get('JobState')} reason={fields.get('Reason')} ran {fields.get('RunTime')}")
        batch_log = fields.get("StdOut")
        if batch_log:
            batch_text = _tail(Path(batch_log), 40)
            parts.append(f"  batch log {batch_log}:\n{batch_text}")
            step_log = re.search(r"--output=(\S+)", batch_text)
            if step_log:
                path = Path(step_log.group(1).replace("%j", job))
                parts.append(f"  step log {path}:\n{_tail(path)}")
    return "\n".join(parts)


@pytest.fixture
def slurm_cluster(slurm_cluster_session) -> Iterator[local_cluster.ClusterInfo]:
    """The cluster, and afterwards none of this test's jobs: a test that fails while its jobs still run or wait
    must not hold the node's CPUs for the tests after it (each would then time out in turn). What is left is
    described on stderr (shown with the failure), cancelled, and its docker containers removed."""
    before = queued_jobs()
    yield slurm_cluster_session
    cancel_jobs_left(before)


def cancel_jobs_left(before: set[str], grace_s: float = 30.0) -> None:
    """Cancel the jobs in the queue that were not in ``before`` (describing them on stderr) and remove their docker
    containers; wait until they are gone. A job gets ``grace_s`` to end by itself first: a run records ``done`` a
    moment before its job ends (card, energy, the batch script's last lines)."""
    deadline = time.monotonic() + grace_s
    while (left := queued_jobs() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not left:
        return
    print(f"[slurm_cluster] jobs left by this test, cancelled:\n{describe_jobs(left)}", file=sys.stderr)
    subprocess.run(["scancel", "--full", "--signal=KILL", *left], capture_output=True, timeout=60)
    subprocess.run(["scancel", *left], capture_output=True, timeout=60)
    for job in left:
        remove_job_containers(job)
    deadline = time.monotonic() + 120
    while queued_jobs() & left and time.monotonic() < deadline:
        time.sleep(0.5)


REPO = Path(__file__).resolve().parents[2]


def sbatch_pythia_debug(overrides: list[str], run_name: str, tasks_per_node: int = 1) -> str:
    """``CONFIG=launch_configs/pythia-debug.yaml sbatch launch_job.slurm <overrides> run_name=<run_name>``; the job id.

    One CPU per task, as the slurm_local profile asks, not the script header's two (the whole node): two one-task jobs
    run side by side on the 2-CPU node. ``tasks_per_node`` must match the overrides' ``cluster.tasks_per_node`` (the
    job script checks its allocation against the profile)."""
    flags = ["--cpus-per-task=1", *([f"--ntasks-per-node={tasks_per_node}"] if tasks_per_node != 1 else [])]
    out = subprocess.run(
        ["sbatch", "--parsable", *flags, "launch_job.slurm", *overrides, f"run_name={run_name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "CONFIG": "launch_configs/pythia-debug.yaml", "PYTHON": sys.executable},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def rank_pids(job: str) -> dict[int, int]:
    """Rank -> pid of the training processes of Slurm job ``job``: the tasks slurmstepd started, not ``srun`` (whose
    command line names the same module) nor the batch script (every host's processes are visible from here)."""
    pids = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(
                item.split("=", 1) for item in (proc / "environ").read_bytes().decode().split("\0") if "=" in item
            )
            cmdline = (proc / "cmdline").read_bytes().decode()
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            started_by = (Path("/proc") / parent / "comm").read_text().strip()
        except (OSError, UnicodeDecodeError, IndexError):
            continue
        if env.get("SLURM_JOB_ID") != job or "SLURM_PROCID" not in env:
            continue
        if started_by == "slurmstepd" and "parcae_runner.cli" in cmdline:
            pids[int(env["SLURM_PROCID"])] = int(proc.name)
    return pids


@pytest.fixture
def small(tmp_path, data_cache) -> dict[str, object]:
    """Fixed overrides for tiny, fast runs with results under tmp_path."""
    return {
        "results_dir": str(tmp_path / "results"),
        "data.cache_dir": str(data_cache),
        "data.vocab_size": 512,
        "data.seq_len": 32,
        "train.batch_size": 8,
        "train.micro_batch_size": 8,
        "train.val_interval": 10,
        "train.val_batches": 2,
        "train.log_interval": 5,
        "logger.wandb": "false",
        "logger.measure_power_secs": 1,
    }
