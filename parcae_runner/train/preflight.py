"""Start-up checks that need more than the config package: every problem, before anything is written.

:func:`validate` is what ``parcae-runner train``/``show``, ``plan`` and the Slurm job script run on a
composed config: the config's own checks plus the evaluation task names, which ``eval`` knows.
"""

from __future__ import annotations

from omegaconf import DictConfig

from parcae_runner.config.errors import ConfigError
from parcae_runner.config.validate import validate_run_config
from parcae_runner.data import PreparedData, TokenChunks, check_epochs
from parcae_runner.eval.tasks import check_task_data, check_task_names, go_offline, task_metadata
from parcae_runner.runs import run_name


def validate(cfg: DictConfig) -> None:
    """Raise :class:`~parcae_runner.config.ConfigErrors` listing every bad value in ``cfg``."""
    validate_run_config(cfg, check_tasks=check_task_names)


def check_trainable(cfg: DictConfig) -> None:
    """A ``plan``-only size (e.g. LLaMA 7B) can be planned and costed but not trained: bad input, exit 2."""
    from parcae_runner.models import get_architecture

    arch = get_architecture(cfg.arch.name)
    if cfg.size.name in arch.plan_only:
        raise ConfigError("size", cfg.size.name, f"plan-only for {arch.name} (parcae-runner plan estimates it)")


def check_eval_data(cfg: DictConfig) -> None:
    """An absent dataset of ``train.eval.tasks`` stops the run here, with its how-to, not at the first checkpoint.

    Offline unless HF_DATASETS_OFFLINE/HF_HUB_OFFLINE say otherwise: no hang on a closed network."""
    if cfg.train.eval.tasks:
        go_offline(download=False)
        check_task_data([str(t) for t in cfg.train.eval.tasks], task_metadata(cfg))


def training_tokens(cfg: DictConfig, data: PreparedData) -> tuple[int, int]:
    """``(needed, available)``: tokens the run's steps consume, and tokens its training windows hold."""
    windows = len(TokenChunks(data.train, cfg.data.seq_len, cfg.data.chunk_overlap))
    return cfg.train.max_steps * cfg.train.batch_size * cfg.data.seq_len, windows * cfg.data.seq_len


def check_data_budget(cfg: DictConfig, data: PreparedData) -> float:
    """Warn when the run repeats its data, refuse (``DataError``, exit 2) above ``data.max_epochs``."""
    needed, available = training_tokens(cfg, data)
    return check_epochs(run_name(cfg), needed, available, float(cfg.data.max_epochs))
