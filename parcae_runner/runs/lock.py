"""One trainer per run directory: an exclusive lock held while a run trains.

A second launch of the same run (a duplicate submission, a run resubmitted while it still trains) would train into
the same directory and interleave checkpoints and records; instead it stops before writing anything, naming the
holder (Slurm job, host, pid). The lock is an ``flock`` on ``<run>/.train.lock``, which the kernel drops when the
holder dies however it dies (SIGKILL, node crash excepted on network file systems), so a dead holder's lock is taken
over; the file keeps the last holder's identity so the takeover can say whose it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from parcae_runner.config.errors import ConfigError
from parcae_runner.util.log import log

LOCK_FILE = ".train.lock"


def holder_identity() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def _describe(holder: dict[str, object]) -> str:
    job = f"Slurm job {holder['slurm_job_id']}, " if holder.get("slurm_job_id") else ""
    return f"{job}host {holder.get('host')}, pid {holder.get('pid')}"


def _read(f: object) -> dict[str, object]:
    f.seek(0)  # type: ignore[attr-defined]
    try:
        return json.loads(f.read() or "{}")  # type: ignore[attr-defined]
    except json.JSONDecodeError:
        return {}


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's training lock; ``ConfigError`` (exit 2) when a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(f)
            raise ConfigError(
                "run_dir", str(run_dir), f"is being trained by {_describe(holder)}; wait for it or cancel it"
            ) from None
        previous = _read(f)
        if previous.get("pid") is not None:
            log(f"taking over the lock of {run_dir.name} from {_describe(previous)}, which no longer holds it")
        f.seek(0)
        f.truncate()
        f.write(json.dumps(holder_identity()))
        f.flush()
        try:
            yield
        finally:
            # a clean exit clears the identity, so the next start is not reported as a takeover
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
