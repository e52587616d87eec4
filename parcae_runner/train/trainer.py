"""The Lightning ``Trainer`` of one attempt: its callbacks (metrics, evaluation, checkpoints, requeue, energy,
divergence), its wandb logger, its precision, and closing the logger when the attempt ends."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal, cast

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.schema import Precision, WandbMode
from parcae_runner.config.validate import gradient_accumulation, world_size
from parcae_runner.runs import RunDirectory, run_name
from parcae_runner.runs.attempts import Attempt
from parcae_runner.runs.wandb_offline import finish_run
from parcae_runner.train.checkpointing import CheckpointSchedule, checkpoint_steps
from parcae_runner.train.divergence import DivergenceGuard
from parcae_runner.train.energy import EnergyMeter
from parcae_runner.train.eval_callback import EvalAtCheckpoints
from parcae_runner.train.metrics import MetricsSink, PeriodicEvaluation, TrainMetrics
from parcae_runner.train.ranks import AnnounceRank
from parcae_runner.train.requeue import RequeueOnSignal
from parcae_runner.train.sharding import lightning_strategy
from parcae_runner.util.log import log


@dataclass
class AttemptTrainer:
    """The trainer of one attempt and the callbacks the runner reads once it stops."""

    trainer: L.Trainer
    energy: EnergyMeter | None
    requeue: RequeueOnSignal


class _DropLightningAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_lightning() -> None:
    """Keep the training output to what a researcher reads: no product tips, no per-save notices."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningAdverts())
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # outside a Slurm job, an srun on PATH is not a mistake (local runs on a login or CI node)
    warnings.filterwarnings("ignore", message="The `srun` command is available")


# the values of config.schema.Precision other than auto, as Lightning's Trainer types them
PrecisionName = Literal["32", "32-true", "bf16-mixed", "bf16-true", "16-mixed"]


def resolve_precision(cfg: DictConfig) -> PrecisionName:
    if cfg.train.precision != Precision.AUTO:
        # validated against Precision when the config was composed
        return cast(PrecisionName, str(cfg.train.precision))
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def _as_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict (wandb's run config)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    return {str(k): v for k, v in tree.items()}


def build_loggers(cfg: DictConfig, run_dir: RunDirectory, wandb_id: str | None) -> list:
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
        config={**_as_dict(cfg), **flat},
        # wandb's own console capture duplicates Lightning's progress output
        settings={"console": "off", "init_timeout": 300},
    )
    return [logger]


def _energy_meter(cfg: DictConfig, run_dir: RunDirectory, attempt: int) -> EnergyMeter | None:
    if not cfg.logger.codecarbon:
        return None
    return EnergyMeter(
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


def _callbacks(
    cfg: DictConfig, run_dir: RunDirectory, attempt: Attempt
) -> tuple[list[L.Callback], EnergyMeter | None, RequeueOnSignal]:
    """The attempt's callbacks, in the order they run, and the two the runner reads once it stops."""
    t = cfg.train
    sink = MetricsSink(run_dir.metrics_file, progress=t.progress)
    steps = checkpoint_steps(
        t.checkpoint.schedule, t.max_steps, t.checkpoint.every, list(t.checkpoint.steps), t.checkpoint.save_last
    )
    checkpoints = CheckpointSchedule(
        run_dir.checkpoints, steps, t.checkpoint.keep_resume_state, attempt.tokens_per_step
    )
    requeue = RequeueOnSignal(checkpoints)
    energy = _energy_meter(cfg, run_dir, attempt.number)
    metrics = TrainMetrics(
        sink,
        t.log_interval,
        attempt.tokens_per_step,
        gradient_accumulation(cfg),
        t.max_steps,
        seq_len=cfg.data.seq_len,
        gpu_type=cfg.cluster.gpu_type,
        energy=energy.so_far if energy is not None else None,
        energy_before=attempt.energy_before(),
    )
    divergence = DivergenceGuard(
        run_dir.checkpoints,
        t.divergence.max_skipped_in_a_row,
        t.divergence.loss_guardrail,
        t.divergence.guardrail_after_steps,
    )
    # order matters: evaluation writes its record before the checkpoint of the same step is made
    callbacks: list[L.Callback] = [
        metrics,
        PeriodicEvaluation(sink, t.val_interval, t.val_batches, t.max_steps),
        EvalAtCheckpoints(sink, run_dir, cfg, steps),
        checkpoints,
        requeue,
        AnnounceRank(),
        divergence,
    ]
    if energy is not None:
        callbacks.append(energy)
    return callbacks, energy, requeue


def build_trainer(cfg: DictConfig, run_dir: RunDirectory, attempt: Attempt) -> AttemptTrainer:
    """The attempt's ``Trainer``: the run's devices, precision and step budget, our callbacks and loggers, and none
    of Lightning's own checkpointing, progress bar, sanity validation or requeue."""
    t = cfg.train
    callbacks, energy, requeue = _callbacks(cfg, run_dir, attempt)
    trainer = L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=lightning_strategy(cfg, world_size(cfg)),
        precision=resolve_precision(cfg),
        max_steps=t.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=gradient_accumulation(cfg),
        gradient_clip_val=t.grad_clip or None,
        logger=build_loggers(cfg, run_dir, attempt.record.wandb_id) or False,
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
    return AttemptTrainer(trainer, energy, requeue)


def close_wandb(trainer: L.Trainer, ok: bool, summary: dict[str, Any] | None = None) -> None:
    """Write the run's summary and finish the wandb run now, not at interpreter exit, so its offline file is
    complete when train() returns (several runs can share one process).

    Only a run that was started is finished: ``wandb.run`` is the process's active run, the logger's once Lightning
    has started it (its id is the logger's ``version``); asking ``logger.experiment`` would start one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        run = wandb.run
        if run is not None and run.id == logger.version:
            if summary:
                run.summary.update(summary)
            finish_run(run, exit_code=0 if ok else 1)
