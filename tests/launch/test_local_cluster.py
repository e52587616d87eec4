"""The local one-node Slurm cluster runs real jobs: a job array through sbatch, a function through submitit."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
import submitit

from tests.launch.conftest import local_cluster

ClusterInfo = local_cluster.ClusterInfo

pytestmark = pytest.mark.slow

# generous: on an idle box each of these takes a few seconds
JOB_TIMEOUT_S = 90.0


def answer() -> int:
    """Runs inside the Slurm job (pickled by value: the job's Python cannot import this test module)."""
    return 6 * 7


def _sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout


def _wait_for(
    condition: Callable[[], bool], what: str, diagnose: Callable[[], str], timeout: float = JOB_TIMEOUT_S
) -> None:
    """Poll ``condition`` until true; after ``timeout`` seconds fail with ``diagnose()``'s text."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not done after {timeout:.0f} s\n{diagnose()}")
        time.sleep(0.2)


def test_start_is_idempotent_and_fast(slurm_cluster: ClusterInfo) -> None:
    t0 = time.monotonic()
    again = local_cluster.start()
    assert time.monotonic() - t0 < 10, "a second start() should only check, not install or restart"
    assert again == slurm_cluster
    assert local_cluster.is_available()
    assert local_cluster.status().up


def test_node_idle_with_the_cpus_slurmd_reports(slurm_cluster: ClusterInfo) -> None:
    reported = dict(f.split("=", 1) for f in _sh("slurmd", "-C").splitlines()[0].split())
    assert slurm_cluster.node == reported["NodeName"]
    assert slurm_cluster.cpus == int(reported["CPUs"])
    assert 0 < slurm_cluster.memory_mb <= int(reported["RealMemory"])

    def node() -> list[str]:
        return _sh("sinfo", "-h", "-N", "-n", slurm_cluster.node, "-o", "%t %c %P").split()

    # jobs left by an earlier test may still be finishing
    diagnose = lambda: _sh("sinfo", "-N", "-l") + _sh("squeue", "-l")  # noqa: E731
    _wait_for(lambda: node()[0] == "idle", f"node {slurm_cluster.node} idle", diagnose, timeout=300)
    assert node() == ["idle", reported["CPUs"], f"{slurm_cluster.partition}*"]


def test_job_array_runs_every_task(slurm_cluster: ClusterInfo, tmp_path: Path) -> None:
    # jobs run as root on this machine, so they write straight into pytest's tmp_path
    out = tmp_path / "out"
    submitted = _sh(
        "sbatch",
        "--parsable",
        "--array=0-2",
        f"--partition={slurm_cluster.partition}",
        "--cpus-per-task=1",
        "--mem=100M",
        "--time=1",
        f"--chdir={tmp_path}",
        f"--output={tmp_path}/slurm-%A_%a.out",
        "--wrap",
        f"echo $SLURM_ARRAY_TASK_ID > {out}_$SLURM_ARRAY_TASK_ID",
    )
    job_id = submitted.strip().split(";")[0]

    def done() -> bool:
        outputs_ok = all(Path(f"{out}_{i}").is_file() and Path(f"{out}_{i}").read_text() == f"{i}\n" for i in range(3))
        return outputs_ok and _sh("squeue", "-h", "-j", job_id) == ""

    def diagnose() -> str:
        logs = "\n".join(f"{p.name}: {p.read_text()}" for p in sorted(tmp_path.iterdir()))
        return f"{_sh('squeue', '-j', job_id)}\n{_sh('scontrol', 'show', 'job', job_id)}\n{logs}"

    _wait_for(done, f"job array {job_id}", diagnose)


def test_submitit_runs_a_function(slurm_cluster: ClusterInfo, tmp_path: Path) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    # timeout_min=5, not less: submitit asks for USR2 90 s before the limit and Slurm may send it up to 60 s early,
    # so with 2 min the job would get USR2 (and die, before submitit's handler is set up) as soon as it starts
    executor.update_parameters(
        slurm_partition=slurm_cluster.partition, timeout_min=5, mem_gb=0.5, cpus_per_task=1, name="answer"
    )
    # pytest imports this module from the repository root on sys.path, the job's interpreter does not: ship its code
    # in the pickle
    module = sys.modules[answer.__module__]
    cloudpickle.register_pickle_by_value(module)
    try:
        job = executor.submit(answer)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    # without slurmdbd submitit's state stays UNKNOWN, so job.result() would wait forever on a job that died
    # before writing its result: bound the wait here
    _wait_for(job.done, f"submitit job {job.job_id}", lambda: f"{job.stdout()}\n{job.stderr()}")
    assert job.result() == 42
