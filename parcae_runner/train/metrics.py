"""Training telemetry: loss, learning rate, throughput, validation; written to
``metrics.jsonl`` and forwarded to Lightning's loggers (wandb)."""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from parcae_runner.config.hardware import device_peak_flops
from parcae_runner.models.flops import training_flops_per_token

# metrics read from the clock, the memory allocator and the energy meter: they describe how a run went on its machine,
# not what it computed, so a resumed run reproduces every other metric exactly but not these
MEASURED_METRICS = frozenset(
    {
        "train/tokens_per_s",
        "train/flops_per_s",
        "train/mfu",
        "train/peak_memory_gib",
        "train/energy_kwh",
        "train/co2_kg",
    }
)

GIB = 2**30


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


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA's max allocated on a GPU, else the peak resident set (RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GIB
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB


class TrainMetrics(L.Callback):
    """Every ``log_interval`` optimizer steps: mean loss over the step's micro-batches, lr, tokens seen, tokens/s,
    achieved FLOP/s (and MFU on a GPU whose peak is known, ``config/hardware.py``), peak memory, the gradient norm
    before clipping (measured by the divergence guard), skipped steps, and the run's energy and CO2 so far.
    Reads the device only at those points, so the hot path never waits on it.

    ``energy``: this attempt's ``(kWh, kg CO2)`` so far (the energy meter's running measurement);
    ``energy_before``: what earlier attempts of the run used, added to it.
    """

    def __init__(
        self,
        sink: MetricsSink,
        log_interval: int,
        tokens_per_step: int,
        accumulate: int,
        max_steps: int,
        *,
        seq_len: int = 0,
        gpu_type: str = "cpu",
        energy: Callable[[], tuple[float, float]] | None = None,
        energy_before: tuple[float, float] = (0.0, 0.0),
    ):
        self.sink = sink
        self.max_steps = max_steps
        self.log_interval = log_interval
        self.tokens_per_step = tokens_per_step
        self.accumulate = accumulate
        self.seq_len = seq_len
        self.gpu_type = gpu_type
        self.energy = energy
        self.energy_before = energy_before
        self.flops_per_token = 0.0
        self.peak_flops: float | None = None
        self._loss_sum: torch.Tensor | None = None
        self._last_step = -1
        self._window_start: tuple[float, int] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step
        self._window_start = (time.perf_counter(), trainer.global_step)
        if self.seq_len:
            self.flops_per_token = training_flops_per_token(pl_module.model, self.seq_len)
        device = pl_module.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
        tf32 = torch.get_float32_matmul_precision() != "highest"  # train.tf32
        peak = device_peak_flops(device.type, name, self.gpu_type, str(trainer.precision), tf32)
        # the achieved FLOP/s are the whole job's: MFU divides by every device's peak
        self.peak_flops = peak * trainer.world_size if peak else None

    def _performance(self, pl_module, tokens_per_s: float) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.flops_per_token:
            achieved = tokens_per_s * self.flops_per_token
            out["train/flops_per_s"] = achieved
            if self.peak_flops:
                out["train/mfu"] = achieved / self.peak_flops
        out["train/peak_memory_gib"] = peak_memory_gib(pl_module.device)
        norm = getattr(pl_module, "last_grad_norm", None)
        if norm is not None:
            out["train/grad_norm"] = float(norm)
        if self.energy is not None:
            kwh, co2 = self.energy()
            out["train/energy_kwh"] = self.energy_before[0] + kwh
            out["train/co2_kg"] = self.energy_before[1] + co2
        return out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].detach() if isinstance(outputs, dict) else outputs.detach()
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.log_interval == 0:
            # Lightning hands callbacks the loss already divided by the accumulation steps
            loss_sum = self._loss_sum
            if trainer.world_size > 1:
                # the global batch's loss, not rank 0's share: a run logs the same loss however it is split
                # into ranks and accumulated micro-batches (every rank reaches this line at the same step)
                loss_sum = trainer.strategy.reduce(loss_sum, reduce_op="mean")
            loss_value = loss_sum.item()
            now = time.perf_counter()
            assert self._window_start is not None, "on_train_start opens the first window"
            t0, s0 = self._window_start
            rate = (step - s0) / max(now - t0, 1e-9)
            record = {
                "train/loss": loss_value,
                "train/skipped_steps": getattr(pl_module, "skipped_steps", 0),
                "train/lr": trainer.optimizers[0].param_groups[0]["lr"],
                "train/tokens": step * self.tokens_per_step,
                "train/tokens_per_s": rate * self.tokens_per_step,
                **self._performance(pl_module, rate * self.tokens_per_step),
            }
            if self.flops_per_token:
                record["train/flops"] = step * self.tokens_per_step * self.flops_per_token
            # a non-finite loss or gradient norm is not a number to plot or summarise: that step was skipped
            # (train/divergence.py) and is counted
            record = {k: v for k, v in record.items() if not isinstance(v, float) or math.isfinite(v)}
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
