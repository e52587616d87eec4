"""What a training job runs, from ``parcae-runner train`` or a Slurm array task: train, then write the model card.

The card is analysis (it reads the finished run directory), which training must not import; it is
written here, above both, by the rank that recorded the finished run.
"""

from __future__ import annotations

from omegaconf import DictConfig

from parcae_runner.config import compose_run_config
from parcae_runner.runs import RunDirectory
from parcae_runner.train.runner import train
from parcae_runner.util.log import log


def write_card_of_finished_run(run_dir: RunDirectory) -> None:
    """The model card of a finished run; a failure here must not turn a finished run into a failed one."""
    from parcae_runner.analysis.card import write_card

    try:
        write_card(run_dir.path)
    except Exception as exc:  # noqa: BLE001 - reported, and `parcae-runner card` can retry
        log(f"could not write card.md: {type(exc).__name__}: {exc}")


def train_run(cfg: DictConfig) -> RunDirectory:
    """Train (or resume) the run of ``cfg`` and write its card when it finishes."""
    return train(cfg, on_done=write_card_of_finished_run)


def run_training(overrides: list[str], config_name: str = "config") -> str:
    """The Slurm array task: compose this point's config on the node and train (or resume) it."""
    return str(train_run(compose_run_config(overrides, config_name=config_name)).path)
