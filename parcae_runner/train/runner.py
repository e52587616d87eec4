"""One training run, from a resolved config to a finished run directory.

The order matters: validate everything and prepare data *before* touching the run directory,
so bad input never costs a user what a previous attempt left there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError, RunStopped
from parcae_runner.config.schema import Precision, WandbMode
from parcae_runner.config.validate import gradient_accumulation
from parcae_runner.data import PreparedData, prepare_data
from parcae_runner.models import build_model, count_parameters
from parcae_runner.models.flops import training_flops_per_token
from parcae_runner.runs import RESUME_FILE, RunDirectory, RunRecord, RunStatus, latest_resumable, run_name
from parcae_runner.runs.lock import run_lock
from parcae_runner.runs.provenance import hardware_info as provenance_hardware_info
from parcae_runner.runs.record import wandb_summary
from parcae_runner.runs.wandb_offline import finish_run
from parcae_runner.train.checkpointing import CheckpointSchedule, checkpoint_steps
from parcae_runner.train.divergence import Diverged, DivergenceGuard
from parcae_runner.train.energy import EnergyMeter, unrecorded_attempts
from parcae_runner.train.eval_callback import EvalAtCheckpoints
from parcae_runner.train.metrics import MetricsSink, PeriodicEvaluation, TrainMetrics
from parcae_runner.train.module import LanguageModelModule
from parcae_runner.train.preflight import check_data_budget, check_eval_data, check_trainable, validate
from parcae_runner.train.ranks import AnnounceRank
from parcae_runner.train.requeue import RequeueOnSignal, requeue_job, slurm_job_id
from parcae_runner.train.speed import speed_up
from parcae_runner.util.log import log

# keys that may change between attempts of one run without changing what is trained
RESUME_TOLERATED = ("train.progress", "train.num_workers", "train.eval", "logger", "cluster")


def _training_view(cfg: DictConfig) -> dict[str, Any]:
    view = OmegaConf.to_container(cfg, resolve=True)
    for key in RESUME_TOLERATED:
        *parents, leaf = key.split(".")
        node = view
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return view


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_same_run(run_dir: RunDirectory, cfg: DictConfig) -> None:
    """Refuse to resume a run directory that was made by a different config."""
    old = run_dir.read_config()
    if old is None:
        return
    before, now = _training_view(old), _training_view(cfg)
    if before != now:
        a, b = _flatten(before), _flatten(now)
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise ConfigError(
            "run_name",
            run_name(cfg),
            f"{run_dir.path} already holds a run with a different config (differs in: {', '.join(diff)}); "
            "pass another run_name=..., or delete that directory to start over",
        )


class _DropLightningAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _quiet_lightning() -> None:
    """Keep the training output to what a researcher reads: no product tips, no per-save notices."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningAdverts())
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # outside a Slurm job, an srun on PATH is not a mistake (local runs on a login or CI node)
    warnings.filterwarnings("ignore", message="The `srun` command is available")


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


def resolve_precision(cfg: DictConfig) -> str:
    if cfg.train.precision != Precision.AUTO:
        return str(cfg.train.precision)
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def hardware_info(trainer: L.Trainer) -> dict[str, Any]:
    on_gpu = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
    return provenance_hardware_info(on_gpu, trainer.world_size, trainer.num_nodes)


def build_loggers(cfg: DictConfig, run_dir: RunDirectory, wandb_id: str) -> list:
    if not cfg.logger.wandb or cfg.logger.mode == WandbMode.DISABLED:
        return []
    from lightning.pytorch.loggers import WandbLogger

    mode = cfg.logger.mode
    if mode == WandbMode.ONLINE and not os.environ.get("WANDB_API_KEY"):
        log("logger.mode=online but WANDB_API_KEY is not set: logging offline (upload later with `wandb sync`)")
        mode = WandbMode.OFFLINE
    # flat top-level keys so wandb's grouping and parallel-coordinates views work without setup
    flat = {
        "architecture": cfg.arch.name,
        "size": cfg.size.name,
        # one key for "architecture x size" bars (analysis/wandb_workspace.py)
        "arch_size": f"{cfg.arch.name}-{cfg.size.name}",
        "seed": cfg.seed,
        "data_seed": cfg.data.seed,
        "sweep": cfg.sweep,
    }
    logger = WandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group or cfg.sweep,
        job_type=cfg.arch.name,
        name=run_name(cfg),
        tags=[cfg.size.name, f"seed{cfg.seed}", *cfg.logger.tags],
        id=wandb_id,
        save_dir=str(run_dir.path),
        offline=mode == WandbMode.OFFLINE,
        resume="allow",
        config={**OmegaConf.to_container(cfg, resolve=True), **flat},
        # wandb's own console capture duplicates Lightning's progress output
        settings={"console": "off", "init_timeout": 300},
    )
    return [logger]


def summarize_metrics(run_dir: RunDirectory) -> dict[str, Any]:
    """Final and best values, read back from metrics.jsonl (the record that survives resumes)."""
    records = run_dir.read_metrics()
    val = [r for r in records if "val/loss" in r]
    train = [r for r in records if "train/loss" in r]
    out: dict[str, Any] = {}
    if val:
        # looped models also validate at several depths: keep each depth's final value
        out.update({f"final_{k[4:].replace('/', '_')}": v for k, v in val[-1].items() if "@R" in k})
        out.update(
            final_val_loss=val[-1]["val/loss"],
            final_val_bpb=val[-1]["val/bpb"],
            best_val_loss=min(r["val/loss"] for r in val),
        )
    if train:
        out["final_train_loss"] = train[-1]["train/loss"]
    return out


def train(cfg: DictConfig, on_done: Callable[[RunDirectory], None] | None = None) -> RunDirectory:
    """Train (or resume) the run described by ``cfg``; returns its run directory.

    ``on_done(run_dir)`` runs once the run is recorded as finished (rank zero only): the model card."""
    validate(cfg)
    check_trainable(cfg)
    run_dir = RunDirectory.for_config(cfg)
    _check_same_run(run_dir, cfg)
    record = run_dir.read_run()
    if record.status == RunStatus.DONE:
        log(f"already finished: {run_dir.path}")
        return run_dir

    _match_threads_to_allocation()
    check_eval_data(cfg)
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


def _is_first_rank() -> bool:
    """Before Lightning starts: is this the process of global rank 0 (Slurm task 0, or the launching process)?"""
    for var in ("SLURM_PROCID", "RANK", "LOCAL_RANK"):
        if os.environ.get(var) not in (None, ""):
            return int(os.environ[var]) == 0
    return True


def _train_locked(
    cfg: DictConfig,
    run_dir: RunDirectory,
    model: torch.nn.Module,
    data: PreparedData,
    on_done: Callable[[RunDirectory], None] | None,
) -> RunDirectory:
    record = run_dir.read_run()  # again, under the lock: a previous holder may have finished it meanwhile
    if record.status == RunStatus.DONE:
        log(f"already finished: {run_dir.path}")
        return run_dir
    resume = latest_resumable(run_dir.checkpoints, verify=True)
    if _is_first_rank():
        attempt = _start_attempt(cfg, run_dir, record, model, data, resume)
    else:
        # rank 0 alone writes the run directory and counts the attempt; this rank's number is provisional until
        # the energy meter takes rank 0's at the start of fit (a rank may read run.json before or after it changed)
        tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
        attempt = _Attempt(record, record.attempts + 1, time.time(), resume[0] if resume else 0, tokens_per_step)

    _quiet_lightning()
    earlier = [h for h in attempt.record.attempt_history if h.get("attempt") != attempt.number]
    energy_before = (sum(h.get("energy_kwh", 0.0) for h in earlier), sum(h.get("co2_kg", 0.0) for h in earlier))
    trainer, energy, requeue = _make_trainer(
        cfg, run_dir, data, attempt.record.wandb_id, attempt.tokens_per_step, attempt.number, energy_before
    )
    module = LanguageModelModule(model, cfg, data)
    status, error = RunStatus.DONE, None
    try:
        trainer.fit(module, ckpt_path=str(resume[1] / RESUME_FILE) if resume else None)
        if requeue.triggered:
            status = _status_after_signal(attempt.number, cfg.cluster.max_requeues)
        elif trainer.interrupted:
            status = RunStatus.INTERRUPTED
    except BaseException as exc:
        status, error = _failure_status(exc)
        raise
    finally:
        digest = module.train_loader.digest.hexdigest() if module.train_loader is not None else None
        _finish(run_dir, trainer, energy, attempt, status, error, digest, on_done)
    # last: once Slurm has the requeue it may terminate this job at any moment
    if status == RunStatus.REQUEUED and trainer.is_global_zero:
        requeue_job()
    return run_dir


@dataclass
class _Attempt:
    """One attempt of a run: its number, when and from which step it started, and run.json as it began."""

    record: RunRecord
    number: int
    started: float
    start_step: int
    tokens_per_step: int


def _start_attempt(
    cfg: DictConfig,
    run_dir: RunDirectory,
    record: RunRecord,
    model: torch.nn.Module,
    data: PreparedData,
    resume: tuple[int, Path] | None,
) -> _Attempt:
    """Create the run directory (config, metrics cut to the resume step) and record the attempt as running."""
    run_dir.create()
    run_dir.write_config(cfg)
    start_step = resume[0] if resume else 0
    run_dir.truncate_metrics(start_step if resume else -1)
    attempt = record.attempts + 1
    started = time.time()
    # attempts killed before they could record themselves (SIGKILL) left their energy so far in energy/
    recorded = {int(h.get("attempt", 0)) for h in record.attempt_history} | {attempt}
    history = [*record.attempt_history, *unrecorded_attempts(run_dir.path, recorded)]
    record = run_dir.update_run(
        attempt_history=history,
        status=RunStatus.RUNNING,
        run_name=run_name(cfg),
        sweep=cfg.sweep,
        arch=cfg.arch.name,
        size=cfg.size.name,
        seed=cfg.seed,
        data_seed=cfg.data.seed,
        attempts=attempt,
        wandb_id=record.wandb_id or uuid.uuid4().hex[:16],
        max_steps=cfg.train.max_steps,
        tokens_per_step=cfg.train.batch_size * cfg.data.seq_len,
        params=count_parameters(model),
        params_non_embedding=count_parameters(model, non_embedding=True),
        flops_per_token=training_flops_per_token(model, cfg.data.seq_len),
        data={
            "dir": str(data.dir),
            "vocab_size": data.vocab_size,
            "model_vocab_size": data.model_vocab_size,
            "eos_id": data.eos_id,
            "source": data.meta.get("source_description"),
            "tokenizer_sha256": data.meta.get("tokenizer_sha256"),
            "hash": data.dir.name.rsplit("-", 1)[-1],
            "train_tokens": int(data.train.tokens),
            "val_tokens": int(data.val.tokens),
        },
        started_at=record.started_at or started,
        error=None,
    )
    log(
        f"run directory: {run_dir.path} (attempt {attempt}" + (f", resuming from step {start_step})" if resume else ")")
    )
    return _Attempt(record, attempt, started, start_step, int(record["tokens_per_step"]))


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
    if type(exc).__name__ == "SIGTERMException":
        return RunStatus.TERMINATED, "SIGTERM"
    return RunStatus.FAILED, f"{type(exc).__name__}: {exc}"


def _make_trainer(
    cfg: DictConfig,
    run_dir: RunDirectory,
    data: PreparedData,
    wandb_id: str,
    tokens_per_step: int,
    attempt: int,
    energy_before: tuple[float, float] = (0.0, 0.0),
) -> tuple[L.Trainer, EnergyMeter | None, RequeueOnSignal]:
    t = cfg.train
    sink = MetricsSink(run_dir.metrics_file, progress=t.progress)
    steps = checkpoint_steps(
        t.checkpoint.schedule, t.max_steps, t.checkpoint.every, list(t.checkpoint.steps), t.checkpoint.save_last
    )
    accumulate = gradient_accumulation(cfg)
    # order matters: evaluation writes its record before the checkpoint of the same step is made
    checkpoints = CheckpointSchedule(run_dir.checkpoints, steps, t.checkpoint.keep_resume_state, tokens_per_step)
    requeue = RequeueOnSignal(checkpoints)
    energy = None
    if cfg.logger.codecarbon:
        energy = EnergyMeter(
            run_dir.path,
            cfg.cluster.country_iso_code,
            cfg.cluster.region,
            cfg.logger.measure_power_secs,
            project_name=run_name(cfg),
            attempt=attempt,
            flush_secs=cfg.logger.energy_flush_secs,
            intensity_kg_per_kwh=cfg.cluster.carbon_intensity_kg_per_kwh,
            intensity_source=cfg.cluster.carbon_intensity_source,
        )
    metrics = TrainMetrics(
        sink,
        t.log_interval,
        tokens_per_step,
        accumulate,
        t.max_steps,
        seq_len=cfg.data.seq_len,
        gpu_type=cfg.cluster.gpu_type,
        energy=energy.so_far if energy is not None else None,
        energy_before=energy_before,
    )
    callbacks: list[L.Callback] = [
        metrics,
        PeriodicEvaluation(sink, t.val_interval, t.val_batches, t.max_steps),
        EvalAtCheckpoints(sink, run_dir, cfg, steps),
        checkpoints,
        requeue,
        AnnounceRank(),
        DivergenceGuard(
            run_dir.checkpoints,
            t.divergence.max_skipped_in_a_row,
            t.divergence.loss_guardrail,
            t.divergence.guardrail_after_steps,
        ),
    ]
    if energy is not None:
        callbacks.append(energy)
    trainer = L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=resolve_precision(cfg),
        max_steps=t.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=t.grad_clip or None,
        logger=build_loggers(cfg, run_dir, wandb_id) or False,
        callbacks=callbacks,
        enable_checkpointing=False,
        # progress is printed as one line per log interval by TrainMetrics (see MetricsSink)
        enable_progress_bar=False,
        enable_model_summary=t.progress,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_interval,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir.path),
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
    )
    return trainer, energy, requeue


def _close_wandb(trainer: L.Trainer, ok: bool, summary: dict[str, Any] | None = None) -> None:
    """Write the run's summary and finish the wandb run now, not at interpreter exit, so its offline file is
    complete when train() returns (several runs can share one process)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            if summary:
                logger.experiment.summary.update(summary)
            finish_run(logger.experiment, exit_code=0 if ok else 1)


def _finish(
    run_dir: RunDirectory,
    trainer: L.Trainer,
    energy: EnergyMeter | None,
    attempt: _Attempt,
    status: RunStatus,
    error: str | None,
    batch_digest: str | None = None,
    on_done: Callable[[RunDirectory], None] | None = None,
) -> None:
    """Record this attempt in run.json: status, summary metrics, energy summed over attempts."""
    if not trainer.is_global_zero:
        return
    reading = None
    if energy is not None:
        energy.stop()
        reading = energy.add_other_nodes(trainer.num_nodes)
    ended = time.time()
    step = trainer.global_step
    started, start_step = attempt.started, attempt.start_step
    history = [h for h in attempt.record.attempt_history if h.get("attempt") != attempt.number]
    history.append(
        {
            "attempt": attempt.number,
            "status": status,
            "start_step": start_step,
            "end_step": step,
            "started_at": started,
            "ended_at": ended,
            "duration_s": ended - started,
            "energy_kwh": reading.energy_kwh if reading else 0.0,
            "batch_digest": batch_digest,
            "co2_kg": reading.co2_kg if reading else 0.0,
        }
    )
    steps_this_attempt = max(0, step - start_step)
    tokens_per_step = attempt.tokens_per_step
    hardware = hardware_info(trainer)
    duration_s = sum(h.get("duration_s", 0.0) for h in history)
    gpus = hardware["devices"] if hardware["accelerator"] == "gpu" else 0
    fields: dict[str, Any] = dict(
        status=status,
        error=error,
        step=step,
        tokens=step * tokens_per_step,
        attempt_history=history,
        duration_s=duration_s,
        flops=step * tokens_per_step * float(attempt.record.get("flops_per_token") or 0.0),
        # wall time x GPUs, summed over attempts (0 for a CPU run; an earlier attempt is counted at this one's width)
        gpu_hours=duration_s * gpus / 3600,
        energy_kwh=sum(h["energy_kwh"] for h in history),
        co2_kg=sum(h["co2_kg"] for h in history),
        tokens_per_s=steps_this_attempt * tokens_per_step / max(ended - started, 1e-9),
        hardware=hardware,
        finished_at=ended if status == RunStatus.DONE else None,
        **summarize_metrics(run_dir),
    )
    if reading is not None:
        fields["carbon"] = {
            "source": "codecarbon",
            "country": reading.country,
            "region": reading.region,
            "intensity_kg_per_kwh": reading.intensity_kg_per_kwh,
            # codecarbon's country figure, or cluster.carbon_intensity_kg_per_kwh with its source
            "intensity_source": reading.intensity_source,
            "cpu_model": reading.cpu_model,
            "gpu_model": reading.gpu_model,
        }
    record = run_dir.update_run(**fields)
    _close_wandb(trainer, ok=status == RunStatus.DONE, summary=wandb_summary(record))
    if status == RunStatus.DONE and on_done is not None:
        on_done(run_dir)
    log(
        f"{status}: step {step}, {fields.get('final_val_loss', float('nan')):.4f} val loss, "
        f"{fields['energy_kwh'] * 1000:.3f} Wh, run directory {Path(run_dir.path).resolve()}"
    )
