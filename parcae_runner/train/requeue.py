"""Time limits and preemption: the one component that owns requeueing.

Slurm sends ``SIGUSR1`` ``cluster.signal_delay_s`` seconds before the time limit (and a
preempting scheduler can send it too). This callback only notes the signal in the handler —
saving from inside a signal handler would catch the model mid-step — and acts at the next
optimizer-step boundary: it writes a regular ``checkpoint-N`` and stops the trainer. The runner
then records the attempt (status, energy) in ``run.json`` and, last of all, asks Slurm to requeue
the job; the requeued job runs the same command, which resumes from that checkpoint.

Why not submitit's or Lightning's own requeue: submitit signals USR2 and, on requeue, re-runs the
task from scratch without a fresh checkpoint; Lightning saves ``hpc_ckpt`` from inside the signal
handler (mid-step) into a location our resume logic does not own. Owning it here gives one
behaviour for submitit arrays and ``sbatch launch_job.slurm`` alike. Both others are switched off:
the sbatch signal is USR1 (submitit listens on USR2) and Lightning's SLURMEnvironment gets
``auto_requeue=False``.

In a container (pyxis, apptainer, docker) there is no ``scontrol``: the job script outside the
container sets ``PARCAE_REQUEUE=job-script`` and requeues the job itself once this process has
recorded the attempt as ``requeued`` and exited (:mod:`parcae_runner.launch.job_script`).
"""

from __future__ import annotations

import os
import signal
import subprocess

import lightning as L

from parcae_runner.runs.checkpoints import PREFIX
from parcae_runner.runs.provenance import REQUEUE_BY_JOB_SCRIPT, REQUEUE_ENV
from parcae_runner.train.checkpointing import CheckpointSchedule
from parcae_runner.util.log import log

REQUEUE_SIGNAL = signal.SIGUSR1


class RequeueOnSignal(L.Callback):
    def __init__(self, checkpoints: CheckpointSchedule):
        self.checkpoints = checkpoints
        self.requested = False
        self.triggered = False
        self._last_step = -1

    def _on_signal(self, signum, frame) -> None:
        log(f"received signal {signum}: checkpointing at the next step")
        self.requested = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        signal.signal(REQUEUE_SIGNAL, self._on_signal)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        # every rank must stop at the same step; the signal may reach ranks at different times
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            if not (self.checkpoints.root / f"{PREFIX}{step}").exists():
                self.checkpoints.save(trainer, pl_module)
            self.triggered = True
            trainer.should_stop = True


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` needs: ``<array job>_<task>`` inside an array, else the job id."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_job() -> bool:
    """Ask Slurm to requeue this job; True when it accepted (or, in a container, when the job script will)."""
    job = slurm_job_id()
    if job is None:
        return False
    if os.environ.get(REQUEUE_ENV) == REQUEUE_BY_JOB_SCRIPT:
        # in a container there is no scontrol: the job script outside requeues once this process has exited
        log(f"checkpointed: the job script requeues Slurm job {job}")
        return True
    out = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if out.returncode != 0:
        log(f"scontrol requeue {job} failed: {out.stderr.strip()}")
        return False
    log(f"requeued Slurm job {job}")
    return True
