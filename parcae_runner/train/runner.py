"""One training run, from a resolved config to a finished run directory.

The order matters: validate everything and prepare data *before* touching the run directory,
so bad input never costs a user what a previous attempt left there.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.validate import gradient_accumulation, validate_run_config
from parcae_runner.data import PreparedData, prepare_data
from parcae_runner.eval.callback import EvalAtCheckpoints
from parcae_runner.launch.container import runtime_info as container_info
from parcae_runner.launch.requeue import RequeueOnSignal, requeue_job, slurm_job_id
from parcae_runner.models import build_model, count_parameters
from parcae_runner.train.checkpointing import RESUME_FILE, CheckpointSchedule, checkpoint_steps, latest_resumable
from parcae_runner.train.energy import EnergyMeter
from parcae_runner.train.metrics import MetricsSink, PeriodicEvaluation, TrainMetrics
from parcae_runner.train.module import LanguageModelModule
from parcae_runner.train.run_dir import RunDirectory, run_name_for

# keys that may change between attempts of one run without changing what is trained
RESUME_TOLERATED = ("train.progress", "train.num_workers", "train.eval", "logger", "cluster")


def _log(msg: str) -> None:
    print(f"[parcae-runner] {msg}", file=sys.stderr, flush=True)


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
            run_name_for(cfg),
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _match_threads_to_allocation() -> None:
    """Inside a Slurm job use the CPUs it was given: torch defaults to every core of the node,
    and two jobs sharing a node would then each run twice as many threads as there are cores."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        torch.set_num_threads(int(cpus))


def resolve_precision(cfg: DictConfig) -> str:
    if cfg.train.precision != "auto":
        return str(cfg.train.precision)
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def hardware_info(trainer: L.Trainer) -> dict[str, Any]:
    on_gpu = torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda"
    return {
        "accelerator": "gpu" if on_gpu else "cpu",
        "device_name": torch.cuda.get_device_name(0) if on_gpu else cpu_model(),
        "devices": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "torch": torch.__version__,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "container": container_info(),
    }


def build_loggers(cfg: DictConfig, run_dir: RunDirectory, wandb_id: str) -> list:
    if not cfg.logger.wandb or cfg.logger.mode == "disabled":
        return []
    from lightning.pytorch.loggers import WandbLogger

    mode = cfg.logger.mode
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        _log("logger.mode=online but WANDB_API_KEY is not set: logging offline (upload later with `wandb sync`)")
        mode = "offline"
    # flat top-level keys so wandb's grouping and parallel-coordinates views work without setup
    flat = {
        "architecture": cfg.arch.name,
        "size": cfg.size.name,
        "seed": cfg.seed,
        "data_seed": cfg.data.seed,
        "sweep": cfg.sweep,
    }
    logger = WandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group or cfg.sweep,
        job_type=cfg.arch.name,
        name=run_name_for(cfg),
        tags=[cfg.size.name, f"seed{cfg.seed}", *cfg.logger.tags],
        id=wandb_id,
        save_dir=str(run_dir.path),
        offline=mode == "offline",
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


def train(cfg: DictConfig) -> RunDirectory:
    """Train (or resume) the run described by ``cfg``; returns its run directory."""
    validate_run_config(cfg)
    run_dir = RunDirectory.for_config(cfg)
    _check_same_run(run_dir, cfg)
    record = run_dir.read_run()
    if record.get("status") == "done":
        _log(f"already finished: {run_dir.path}")
        return run_dir

    _match_threads_to_allocation()
    data = prepare_data(cfg.data, progress=cfg.train.progress)
    if cfg.train.eval.tasks:
        from parcae_runner.eval.tasks import check_task_data, go_offline, task_metadata

        # an absent dataset stops the run here, with its how-to, not at the first checkpoint
        # (offline unless HF_DATASETS_OFFLINE/HF_HUB_OFFLINE say otherwise: no hang on a closed network)
        go_offline(download=False)
        check_task_data([str(t) for t in cfg.train.eval.tasks], task_metadata(cfg))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.arch, cfg.size.name, data.vocab_size)

    resume = latest_resumable(run_dir.checkpoints)
    if cfg.train.init_from and not resume:
        from parcae_runner.models.hf import init_from_hf

        init_from_hf(model, cfg.train.init_from)
    run_dir.create()
    run_dir.write_config(cfg)
    wandb_id = record.get("wandb_id") or uuid.uuid4().hex[:16]
    start_step = resume[0] if resume else 0
    run_dir.truncate_metrics(start_step if resume else -1)

    tokens_per_step = cfg.train.batch_size * cfg.data.seq_len
    attempt = record.get("attempts", 0) + 1
    started = time.time()
    record = run_dir.update_run(
        status="running",
        run_name=run_name_for(cfg),
        sweep=cfg.sweep,
        arch=cfg.arch.name,
        size=cfg.size.name,
        seed=cfg.seed,
        data_seed=cfg.data.seed,
        attempts=attempt,
        wandb_id=wandb_id,
        max_steps=cfg.train.max_steps,
        tokens_per_step=tokens_per_step,
        params=count_parameters(model),
        params_non_embedding=count_parameters(model, non_embedding=True),
        data={
            "dir": str(data.dir),
            "vocab_size": data.vocab_size,
            "hash": data.meta.get("content_hash"),
            "train_tokens": int(len(data.train)),
            "val_tokens": int(len(data.val)),
        },
        started_at=record.get("started_at", started),
        error=None,
    )
    _log(
        f"run directory: {run_dir.path} (attempt {attempt}" + (f", resuming from step {start_step})" if resume else ")")
    )

    _quiet_lightning()
    trainer, energy, requeue = _make_trainer(cfg, run_dir, data, wandb_id, tokens_per_step)
    module = LanguageModelModule(model, cfg, data)
    status, error = "done", None
    try:
        trainer.fit(module, ckpt_path=str(resume[1] / RESUME_FILE) if resume else None)
        if requeue.triggered:
            status = _status_after_signal(attempt, cfg.cluster.max_requeues)
        elif trainer.interrupted:
            status = "interrupted"
    except BaseException as exc:
        status, error = _failure_status(exc)
        raise
    finally:
        digest = module.train_loader.digest.hexdigest() if module.train_loader is not None else None
        _finish(run_dir, trainer, energy, record, attempt, started, start_step, status, error, digest)
    # last: once Slurm has the requeue it may terminate this job at any moment
    if status == "requeued" and trainer.is_global_zero:
        requeue_job()
    return run_dir


def _status_after_signal(attempt: int, max_requeues: int) -> str:
    """A run stopped by the time-limit/preemption signal has its checkpoint; say what happens next."""
    if slurm_job_id() is None:
        return "stopped"  # not a Slurm job: rerun the command to continue
    return "requeued" if attempt <= max_requeues else "requeue-limit"


def _failure_status(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt"
    # SIGTERM: scancel, or the time limit passed without the warning signal being acted on
    if type(exc).__name__ == "SIGTERMException":
        return "terminated", "SIGTERM"
    return "failed", f"{type(exc).__name__}: {exc}"


def _make_trainer(
    cfg: DictConfig, run_dir: RunDirectory, data: PreparedData, wandb_id: str, tokens_per_step: int
) -> tuple[L.Trainer, EnergyMeter | None]:
    t = cfg.train
    sink = MetricsSink(run_dir.metrics_file, progress=t.progress)
    steps = checkpoint_steps(
        t.checkpoint.schedule, t.max_steps, t.checkpoint.every, list(t.checkpoint.steps), t.checkpoint.save_last
    )
    accumulate = gradient_accumulation(cfg)
    # order matters: evaluation writes its record before the checkpoint of the same step is made
    checkpoints = CheckpointSchedule(run_dir.checkpoints, steps, t.checkpoint.keep_resume_state, tokens_per_step)
    requeue = RequeueOnSignal(checkpoints)
    callbacks: list[L.Callback] = [
        TrainMetrics(sink, t.log_interval, tokens_per_step, accumulate, t.max_steps),
        PeriodicEvaluation(sink, t.val_interval, t.val_batches, t.max_steps),
        EvalAtCheckpoints(sink, run_dir, cfg, steps),
        checkpoints,
        requeue,
    ]
    energy = None
    if cfg.logger.codecarbon:
        energy = EnergyMeter(
            run_dir.path,
            cfg.cluster.country_iso_code,
            cfg.cluster.region,
            cfg.logger.measure_power_secs,
            project_name=run_name_for(cfg),
        )
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


def _close_wandb(trainer: L.Trainer, ok: bool) -> None:
    """Finish the wandb run now, not at interpreter exit, so its offline file is complete when
    train() returns (several runs can share one process)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=0 if ok else 1)


def _write_card(run_dir: RunDirectory) -> None:
    """The model card of a finished run; a failure here must not turn a finished run into a failed one."""
    from parcae_runner.analysis.card import write_card

    try:
        write_card(run_dir.path)
    except Exception as exc:  # noqa: BLE001 - reported, and `parcae-runner card` can retry
        _log(f"could not write card.md: {type(exc).__name__}: {exc}")


def _finish(
    run_dir: RunDirectory,
    trainer: L.Trainer,
    energy: EnergyMeter | None,
    record: dict,
    attempt: int,
    started: float,
    start_step: int,
    status: str,
    error: str | None,
    batch_digest: str | None = None,
) -> None:
    """Record this attempt in run.json: status, summary metrics, energy summed over attempts."""
    if not trainer.is_global_zero:
        return
    reading = energy.stop() if energy is not None else None
    _close_wandb(trainer, ok=status == "done")
    ended = time.time()
    step = trainer.global_step
    history = [h for h in record.get("attempt_history", []) if h.get("attempt") != attempt]
    history.append(
        {
            "attempt": attempt,
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
    tokens_per_step = record["tokens_per_step"]
    fields: dict[str, Any] = dict(
        status=status,
        error=error,
        step=step,
        tokens=step * tokens_per_step,
        attempt_history=history,
        duration_s=sum(h["duration_s"] for h in history),
        energy_kwh=sum(h["energy_kwh"] for h in history),
        co2_kg=sum(h["co2_kg"] for h in history),
        tokens_per_s=steps_this_attempt * tokens_per_step / max(ended - started, 1e-9),
        hardware=hardware_info(trainer),
        finished_at=ended if status == "done" else None,
        **summarize_metrics(run_dir),
    )
    if reading is not None:
        fields["carbon"] = {
            "source": "codecarbon",
            "country": reading.country,
            "region": reading.region,
            "intensity_kg_per_kwh": reading.intensity_kg_per_kwh,
            "cpu_model": reading.cpu_model,
            "gpu_model": reading.gpu_model,
        }
    run_dir.update_run(**fields)
    if status == "done":
        _write_card(run_dir)
    _log(
        f"{status}: step {step}, {fields.get('final_val_loss', float('nan')):.4f} val loss, "
        f"{fields['energy_kwh'] * 1000:.3f} Wh, run directory {Path(run_dir.path).resolve()}"
    )
