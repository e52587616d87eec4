"""Post-hoc evaluation results in the run's own wandb run, beside its loss curves.

``parcae-runner eval`` resumes the wandb run its training logged to (by the id in ``run.json``) and logs
``eval/<task>/<metric>`` against ``trainer/global_step`` (the x axis Lightning's wandb logger gives every training
metric), one row per checkpoint, then writes the run's summary again with the evaluation's newest results in it.
Offline by default: a new ``wandb/offline-run-*`` folder under the run directory, uploaded with the others by
``parcae-runner wandb-sync``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from parcae_runner.config.errors import ConfigError
from parcae_runner.eval.results import flat_metrics
from parcae_runner.runs import RunDirectory, RunRecord
from parcae_runner.runs.layout import run_name
from parcae_runner.runs.record import wandb_summary
from parcae_runner.runs.wandb_offline import finish_run

# what --wandb takes: auto = offline when the run logged to wandb during training, else nothing
MODES = ("auto", "offline", "online", "off")
# what a logged evaluation runs in: wandb.init's mode
LogMode = Literal["offline", "online"]
STEP_KEY = "trainer/global_step"


def resolve_mode(mode: str | None, cfg: Any) -> LogMode | None:
    """The wandb mode to log evaluation results in, or ``None`` for none."""
    mode = mode or "auto"
    if mode not in MODES:
        raise ConfigError("--wandb", mode, ", ".join(MODES))
    if mode == "off":
        return None
    if mode == "auto":
        logged = bool(cfg.logger.wandb) and str(cfg.logger.mode) != "disabled"
        return "offline" if logged else None
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise ConfigError("--wandb", mode, "offline (WANDB_API_KEY is not set; upload later with wandb-sync)")
    return "online" if mode == "online" else "offline"


class EvalLogger:
    """The run's wandb run, resumed for logging evaluation results at checkpoint steps."""

    def __init__(self, rd: RunDirectory, cfg: Any, record: RunRecord, mode: LogMode):
        import wandb

        if not record.wandb_id:
            raise ConfigError("--wandb", mode, f"{rd.path} has no wandb_id in run.json (trained before wandb ids)")
        self.rd = rd
        self.run = wandb.init(
            id=record.wandb_id,
            resume="allow",
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group or cfg.sweep,
            job_type=cfg.arch.name,
            name=run_name(cfg),
            dir=str(rd.path),
            mode=mode,
            settings=wandb.Settings(console="off", init_timeout=300, silent=True),
        )
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("eval/*", step_metric=STEP_KEY)
        self.latest: dict[str, float] = {}

    def log(self, step: int, records: dict[str, dict[str, Any]]) -> None:
        metrics = flat_metrics(records)
        self.latest.update(metrics)
        self.run.log({**metrics, STEP_KEY: step})

    def finish(self, ok: bool = True) -> None:
        summary = wandb_summary(self.rd.read_run())
        self.run.summary.update({**summary, **self.latest})
        finish_run(self.run, exit_code=0 if ok else 1)
