"""What a training process runs (``parcae-runner train``, also inside a Slurm job step): train, then write the card.

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
    """Compose a point's config here and train (or resume) it in this process. Slurm array tasks do not call
    this: they run the job step of ``launch_job.slurm`` (:func:`parcae_runner.launch.submit.job_step`)."""
    return str(train_run(compose_run_config(overrides, config_name=config_name)).path)
