"""Checkpoints on a schedule, written atomically as ``checkpoints/checkpoint-N/``.

Each checkpoint folder holds ``model.safetensors`` (weights, what exports and evals read),
``meta.json`` (step, tokens, time, and the size and sha256 of each file, checked at resume) and,
for the newest ``keep_resume_state`` checkpoints,
``trainer_state.ckpt`` (Lightning's full state: optimizer, scheduler, loop counters) from which a
killed run resumes. A sharded run (``train.strategy=fsdp``) writes ``model/`` (its weights) and
``trainer_state.ckpt/`` as ``torch.distributed.checkpoint`` folders instead, every rank its shards; they are read
back at any number of ranks (elastic resume) and ``meta.json`` lists each of their files. The folder is built under
a temporary name and renamed into place, so a folder named ``checkpoint-N`` is always complete.
Reading them: :mod:`parcae_runner.runs.checkpoints`.
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

import lightning as L
from safetensors.torch import save_model
from torch import nn

from parcae_runner.config.errors import RunStopped
from parcae_runner.config.schema import CheckpointSchedule as ScheduleName
from parcae_runner.runs.checkpoints import (
    META_FILE,
    PREFIX,
    RESUME_FILE,
    SHARDED_WEIGHTS_DIR,
    WEIGHTS_FILE,
    checkpoint_files,
    file_digest,
    list_checkpoints,
)
from parcae_runner.runs.sharded_weights import save_sharded_weights
from parcae_runner.util.files import atomic_write_json, fsync_dir, fsync_file


class DiskFull(RunStopped):
    """No space left while writing a checkpoint: the run stops, earlier checkpoints intact."""


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, whether raised as OSError or wrapped by a writer (safetensors' Rust, torch's zip writer)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text or "file write failed" in text


def pythia_steps(max_steps: int, every: int) -> list[int]:
    """Pythia's schedule: 0, 1, 2, 4, ..., 512 (log-spaced early), then every ``every`` steps."""
    early = [0] + [2**i for i in range(10) if 2**i <= max_steps]
    return sorted(set(early) | set(range(every, max_steps + 1, every)))


def checkpoint_steps(schedule: str, max_steps: int, every: int, steps: list[int], save_last: bool) -> list[int]:
    """The optimizer steps at which a checkpoint is written."""
    if schedule == ScheduleName.PYTHIA:
        chosen = set(pythia_steps(max_steps, every))
    elif schedule == ScheduleName.INTERVAL:
        chosen = set(range(0, max_steps + 1, every))
    elif schedule == ScheduleName.LIST:
        chosen = {s for s in steps if s <= max_steps}
    else:
        chosen = set()
    if save_last:
        chosen.add(max_steps)
    return sorted(chosen)


class CheckpointSchedule(L.Callback):
    """Saves ``checkpoint-N`` at each scheduled optimizer step (and step 0 before training)."""

    def __init__(self, root: Path, steps: list[int], keep_resume_state: int, tokens_per_step: int):
        self.root = root
        self.steps = set(steps)
        self.keep_resume_state = keep_resume_state
        self.tokens_per_step = tokens_per_step
        self._last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step
        if trainer.global_step == 0 and 0 in self.steps and not (self.root / f"{PREFIX}0").exists():
            self.save(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step:  # an optimizer step just completed
            self._last_step = step
            if step in self.steps:
                self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        try:
            return self._save(trainer, pl_module)
        except Exception as exc:
            if not _is_disk_full(exc):
                raise
            # the half-built folder goes; every checkpoint already renamed into place is untouched
            shutil.rmtree(self.root / f".tmp-{PREFIX}{trainer.global_step}", ignore_errors=True)
            previous = list_checkpoints(self.root)
            kept = f"{previous[-1][1].name} is intact" if previous else "no earlier checkpoint exists"
            raise DiskFull(
                f"the disk under {self.root} is full while writing {PREFIX}{trainer.global_step}; "
                f"{kept}: free space, then run the same command again to resume"
            ) from None

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        step = trainer.global_step
        final = self.root / f"{PREFIX}{step}"
        tmp = self.root / f".tmp-{PREFIX}{step}"
        if trainer.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        trainer.strategy.barrier()
        # every rank takes part: a sharded model (train.strategy=fsdp) writes the trainer state as a DCP folder, each
        # rank its shards, and its weights as a second one that outlives the trainer state (keep_resume_state)
        trainer.save_checkpoint(tmp / RESUME_FILE)
        model = pl_module.model
        assert isinstance(model, nn.Module), "the task module holds the model it trains"
        if getattr(pl_module, "sharded", False):
            save_sharded_weights(model, tmp / SHARDED_WEIGHTS_DIR)
        if trainer.is_global_zero:
            self._publish(model, tmp, final, step, sharded=getattr(pl_module, "sharded", False))
        trainer.strategy.barrier()
        return final

    def _publish(self, model: nn.Module, tmp: Path, final: Path, step: int, sharded: bool) -> None:
        """Rank zero: the weights (unless sharded), ``meta.json`` over every file, then the rename into place."""
        if not sharded:
            # save_model stores a tied tensor (embedding = head) once; load it back with load_model
            save_model(model, str(tmp / WEIGHTS_FILE), metadata={"step": str(step)})
        files = {name: file_digest(tmp / name) for name in checkpoint_files(tmp)}
        for name in files:
            fsync_file(tmp / name)
        meta = {"step": step, "tokens": step * self.tokens_per_step, "time": time.time(), "files": files}
        atomic_write_json(tmp / META_FILE, meta)
        if final.exists():  # a re-run step after resume: replace the old copy
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(self.root)
        self._prune_resume_state()

    def _prune_resume_state(self) -> None:
        with_state = [p for _, p in list_checkpoints(self.root) if (p / RESUME_FILE).exists()]
        for path in with_state[: -self.keep_resume_state]:
            state = path / RESUME_FILE
            shutil.rmtree(state) if state.is_dir() else state.unlink()
