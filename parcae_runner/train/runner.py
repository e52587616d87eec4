"""One training run, from a resolved config to a finished run directory.

The order matters: the preflight and the data come *before* the run directory is touched, so bad input never
costs a user what a previous attempt left there. Then one attempt: record it as running, fit, record how it ended
(:mod:`parcae_runner.runs.attempts` keeps the history), and last, when the run was stopped by the time-limit
signal, ask Slurm to requeue the job.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from parcae_runner.config.errors import ConfigError, RunStopped
from parcae_runner.config.schema import Strategy
from parcae_runner.data import PreparedData, prepare_data
from parcae_runner.models import build_model
from parcae_runner.runs import RESUME_FILE, RunDirectory, RunRecord, RunStatus, latest_resumable
from parcae_runner.runs.attempts import Attempt, AttemptEnd, history_at_start, totals_at_end
from parcae_runner.runs.lock import run_lock
from parcae_runner.runs.record import wandb_summary
from parcae_runner.train.divergence import Diverged
from parcae_runner.train.energy import unrecorded_attempts
from parcae_runner.train.module import LanguageModelModule
from parcae_runner.train.preflight import check_data_budget, preflight
from parcae_runner.train.requeue import requeue_job, slurm_job_id
from parcae_runner.train.run_facts import carbon_facts, hardware_info, identity, model_and_data, summarize_metrics
from parcae_runner.train.sharding import resolved_strategy
from parcae_runner.train.speed import speed_up
from parcae_runner.train.trainer import AttemptTrainer, build_trainer, close_wandb, quiet_lightning
from parcae_runner.util.log import log

OnDone = Callable[[RunDirectory], None]


def _init_from(model: Any, source: str) -> None:
    """Weights from an exported HF folder, or a weight file in a format of the architecture's spec."""
    from parcae_runner.models.formats import load_weight_file
    from parcae_runner.models.hf import InitMismatch, init_from_hf

    try:
        try:
            loaded = load_weight_file(model, source)
        except ValueError as e:
            raise InitMismatch(source, str(e)) from None
        if not loaded:
            init_from_hf(model, source)
    except InitMismatch as e:  # bad input, said the way every config error is (exit 2)
        raise ConfigError(e.key, e.value, e.allowed) from None


def _match_threads_to_allocation() -> None:
    """Inside a Slurm job use the CPUs it was given: torch defaults to every core of the node,
    and two jobs sharing a node would then each run twice as many threads as there are cores."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        torch.set_num_threads(int(cpus))


def _is_first_rank() -> bool:
    """Before Lightning starts: is this the process of global rank 0 (Slurm task 0, or the launching process)?"""
    for var in ("SLURM_PROCID", "RANK", "LOCAL_RANK"):
        if os.environ.get(var) not in (None, ""):
            return int(os.environ[var]) == 0
    return True


def train(cfg: DictConfig, on_done: OnDone | None = None) -> RunDirectory:
    """Train (or resume) the run described by ``cfg``; returns its run directory.

    ``on_done(run_dir)`` runs once the run is recorded as finished (rank zero only): the model card."""
    preflight(cfg, "train")
    run_dir = RunDirectory.for_config(cfg)
    if run_dir.read_run().status == RunStatus.DONE:
        log(f"already finished: {run_dir.path}")
        return run_dir

    _match_threads_to_allocation()
    data = prepare_data(cfg.data, progress=cfg.train.progress)
    check_data_budget(cfg, data)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.arch, cfg.size, data.model_vocab_size)
    if cfg.train.init_from and not latest_resumable(run_dir.checkpoints):
        _init_from(model, str(cfg.train.init_from))
    # in place: parameter names, checkpoints and exports are those of the plain model
    speed_up(model, bool(cfg.train.compile), bool(cfg.train.activation_checkpointing))
    if cfg.train.tf32:
        torch.set_float32_matmul_precision("high")  # fp32 storage, TF32 tensor-core matmuls (Ampere and later)
    # every input is checked by now; from here on this process is the run's only trainer (ranks > 0 follow rank 0)
    with run_lock(run_dir.path) if _is_first_rank() else contextlib.nullcontext():
        return _train_locked(cfg, run_dir, model, data, on_done)


def _train_locked(
    cfg: DictConfig, run_dir: RunDirectory, model: torch.nn.Module, data: PreparedData, on_done: OnDone | None
) -> RunDirectory:
    record = run_dir.read_run()  # again, under the lock: a previous holder may have finished it meanwhile
    if record.status == RunStatus.DONE:
        log(f"already finished: {run_dir.path}")
        return run_dir
    resume = latest_resumable(run_dir.checkpoints, verify=True)
    if resume and (resume[1] / RESUME_FILE).is_dir() and resolved_strategy(cfg) != Strategy.FSDP:
        raise ConfigError(
            "train.strategy", cfg.train.strategy, f"{resume[1].name} is sharded (DCP): resume with train.strategy=fsdp"
        )
    start_step = resume[0] if resume else 0
    if _is_first_rank():
        attempt = _start_attempt(cfg, run_dir, record, model, data, resume)
    else:
        # rank 0 alone writes the run directory and counts the attempt; this rank's number is provisional until
        # the energy meter takes rank 0's at the start of fit (a rank may read run.json before or after it changed)
        attempt = Attempt.next_of(record, start_step, cfg.train.batch_size * cfg.data.seq_len)

    quiet_lightning()
    built = build_trainer(cfg, run_dir, attempt)
    module = LanguageModelModule(model, cfg, data)
    status, error = RunStatus.DONE, None
    try:
        built.trainer.fit(module, ckpt_path=str(resume[1] / RESUME_FILE) if resume else None)
        if built.requeue.triggered:
            status = _status_after_signal(attempt.number, cfg.cluster.max_requeues)
        elif built.trainer.interrupted:
            status = RunStatus.INTERRUPTED
    except BaseException as exc:
        status, error = _failure_status(exc)
        raise
    finally:
        digest = module.digest.value(built.trainer.global_step)
        _finish(run_dir, built, attempt, status, error, digest, on_done)
    # last: once Slurm has the requeue it may terminate this job at any moment
    if status == RunStatus.REQUEUED and built.trainer.is_global_zero:
        requeue_job()
    return run_dir


def _start_attempt(
    cfg: DictConfig,
    run_dir: RunDirectory,
    record: RunRecord,
    model: torch.nn.Module,
    data: PreparedData,
    resume: tuple[int, Path] | None,
) -> Attempt:
    """Create the run directory (config, metrics cut to the resume step) and record the attempt as running."""
    run_dir.create()
    run_dir.write_config(cfg)
    start_step = resume[0] if resume else 0
    run_dir.truncate_metrics(start_step if resume else -1)
    attempt = Attempt.next_of(record, start_step, cfg.train.batch_size * cfg.data.seq_len)
    # attempts killed before they could record themselves (SIGKILL) left their energy so far in energy/
    history = history_at_start(record, attempt.number, lambda recorded: unrecorded_attempts(run_dir.path, recorded))
    attempt.record = run_dir.update_run(
        attempt_history=history,
        status=RunStatus.RUNNING,
        **identity(cfg),
        attempts=attempt.number,
        wandb_id=record.wandb_id or uuid.uuid4().hex[:16],
        **model_and_data(cfg, model, data),
        started_at=record.started_at or attempt.started,
        error=None,
    )
    attempt.tokens_per_step = int(attempt.record["tokens_per_step"])
    resuming = f", resuming from step {start_step})" if resume else ")"
    log(f"run directory: {run_dir.path} (attempt {attempt.number}{resuming}")
    return attempt


def _status_after_signal(attempt: int, max_requeues: int) -> RunStatus:
    """A run stopped by the time-limit/preemption signal has its checkpoint; say what happens next."""
    if slurm_job_id() is None:
        return RunStatus.STOPPED  # not a Slurm job: rerun the command to continue
    return RunStatus.REQUEUED if attempt <= max_requeues else RunStatus.REQUEUE_LIMIT


def _failure_status(exc: BaseException) -> tuple[RunStatus, str]:
    if isinstance(exc, Diverged):
        return RunStatus.DIVERGED, str(exc)
    if isinstance(exc, RunStopped):
        return RunStatus.FAILED, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.INTERRUPTED, "KeyboardInterrupt"
    # SIGTERM: scancel, or the time limit passed without the warning signal being acted on
    if isinstance(exc, SIGTERMException):
        return RunStatus.TERMINATED, "SIGTERM"
    return RunStatus.FAILED, f"{type(exc).__name__}: {exc}"


def _finish(
    run_dir: RunDirectory,
    built: AttemptTrainer,
    attempt: Attempt,
    status: RunStatus,
    error: str | None,
    batch_digest: str | None,
    on_done: OnDone | None,
) -> None:
    """Record this attempt in run.json: status, summary metrics, energy summed over attempts (rank zero only)."""
    trainer = built.trainer
    if not trainer.is_global_zero:
        return
    reading = None
    if built.energy is not None:
        built.energy.stop()
        reading = built.energy.add_other_nodes(trainer.num_nodes)
    energy = (reading.energy_kwh, reading.co2_kg) if reading is not None else (0.0, 0.0)
    end = AttemptEnd(status, trainer.global_step, time.time(), energy, batch_digest)
    hardware = hardware_info(trainer)
    gpus = hardware["devices"] if hardware["accelerator"] == "gpu" else 0
    fields: dict[str, Any] = dict(
        status=end.status,
        error=error,
        **totals_at_end(attempt, end, gpus),
        hardware=hardware,
        finished_at=end.ended if end.status == RunStatus.DONE else None,
        **summarize_metrics(run_dir),
    )
    if reading is not None:
        fields["carbon"] = carbon_facts(reading)
    record = run_dir.update_run(**fields)
    close_wandb(trainer, ok=end.status == RunStatus.DONE, summary=wandb_summary(record))
    if end.status == RunStatus.DONE and on_done is not None:
        on_done(run_dir)
    log(
        f"{end.status}: step {end.step}, {fields.get('final_val_loss', float('nan')):.4f} val loss, "
        f"{fields['energy_kwh'] * 1000:.3f} Wh, run directory {Path(run_dir.path).resolve()}"
    )
