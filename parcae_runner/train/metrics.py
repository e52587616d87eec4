"""Training telemetry: loss, learning rate, throughput, validation; written to
``metrics.jsonl`` and forwarded to Lightning's loggers (wandb)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricsSink:
    """Appends one JSON record per event to ``metrics.jsonl`` and logs it to every logger.

    Lines are flushed and fsynced before a checkpoint can be written after them, so a resumed
    run finds every record up to its checkpoint.
    """

    def __init__(self, path: Path, progress: bool = False):
        self.path = path
        self.progress = progress

    def write(self, step: int, record: dict[str, Any], trainer: L.Trainer, note: str = "") -> None:
        if not trainer.is_global_zero:
            return
        line = json.dumps({"step": step, **record}, sort_keys=True)
        with self.path.open("a") as f:
            f.write(line + "\n")
            f.flush()
        if self.progress:
            # one plain line per record: readable live and in a Slurm log file alike
            shown = " | ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float))
            print(f"step {step}{note}: {shown}", file=sys.stderr, flush=True)
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        for logger in trainer.loggers:
            logger.log_metrics(numeric, step=step)


class TrainMetrics(L.Callback):
    """Every ``log_interval`` optimizer steps: mean loss over the step's micro-batches, lr,
    tokens seen, tokens/s. Checks the loss is finite (the NaN guard) at the same points, so
    the hot path never waits on the device."""

    def __init__(self, sink: MetricsSink, log_interval: int, tokens_per_step: int, accumulate: int, max_steps: int):
        self.sink = sink
        self.max_steps = max_steps
        self.log_interval = log_interval
        self.tokens_per_step = tokens_per_step
        self.accumulate = accumulate
        self._loss_sum: torch.Tensor | None = None
        self._last_step = -1
        self._window_start: tuple[float, int] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step
        self._window_start = (time.perf_counter(), trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].detach() if isinstance(outputs, dict) else outputs.detach()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.log_interval == 0:
            # Lightning hands callbacks the loss already divided by the accumulation steps
            loss_value = self._loss_sum.item()
            now = time.perf_counter()
            t0, s0 = self._window_start
            rate = (step - s0) / max(now - t0, 1e-9)
            record = {
                "train/loss": loss_value,
                "train/skipped_steps": getattr(pl_module, "skipped_steps", 0),
                "train/lr": trainer.optimizers[0].param_groups[0]["lr"],
                "train/tokens": step * self.tokens_per_step,
                "train/tokens_per_s": rate * self.tokens_per_step,
            }
            if not math.isfinite(loss_value):
                # not a number to plot or summarise: that step was skipped (train/divergence.py) and is counted
                del record["train/loss"]
            # looped models: depth drawn and state telemetry of the last micro-batch
            telemetry = getattr(pl_module.model, "last_telemetry", None) or {}
            record.update({k: v for k, v in telemetry.items() if k.count("/") == 1})
            note = f"/{self.max_steps} ({100 * step / self.max_steps:.0f}%, eta {_eta((self.max_steps - step) / rate)})"
            self.sink.write(step, record, trainer, note)
            self._window_start = (now, step)
        self._loss_sum = None


class PeriodicEvaluation(L.Callback):
    """Validation loss and bits per byte every ``interval`` optimizer steps, at step 0 and at
    the end. Runs before the checkpoint callback in the same hook, so a checkpoint's metrics
    are always on disk before the checkpoint is."""

    def __init__(self, sink: MetricsSink, interval: int, max_batches: int, max_steps: int):
        self.sink = sink
        self.interval = interval
        self.max_batches = max_batches
        self.max_steps = max_steps
        self._last_step = -1
        self.last: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step
        if trainer.global_step == 0:
            self._evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step:
            self._last_step = step
            if step % self.interval == 0 or step == self.max_steps:
                self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer, pl_module) -> None:
        if self.max_batches == 0:
            return
        self.last = pl_module.evaluate(self.max_batches)
        self.sink.write(trainer.global_step, self.last, trainer)
