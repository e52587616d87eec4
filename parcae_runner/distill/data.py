"""Token batches for distillation: the project's prepared data (``data.*`` overrides), random training windows
seeded by (seed, step) and fixed held-out windows from the validation split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from parcae_runner.config import compose_run_config
from parcae_runner.data import PreparedData, prepare_data


def prepare(data_overrides: dict[str, Any]) -> tuple[PreparedData, int]:
    """The prepared data and its ``seq_len``, from ``data.*`` overrides of the run config."""
    cfg = compose_run_config([f"data.{k}={v}" for k, v in data_overrides.items()])
    return prepare_data(cfg.data, progress=False), int(cfg.data.seq_len)


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[Tensor, Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    batch = torch.from_numpy(rows)
    return batch[:, :-1], batch[:, 1:]  # x, y: [B, T]


def train_batch(data: PreparedData, seq_len: int, batch: int, seed: int, step: int) -> tuple[Tensor, Tensor]:
    """``batch`` random windows of the training split; a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(data.train) - seq_len - 1, size=batch)
    return _windows(data.train, starts, seq_len)


def heldout_batches(data: PreparedData, seq_len: int, batch: int, n: int) -> list[tuple[Tensor, Tensor]]:
    """``n`` batches of consecutive windows from the validation split (the same for every run)."""
    tokens = data.val if len(data.val) > (seq_len + 1) * batch else data.train[-(seq_len + 1) * batch * n - 1 :]
    count = min(n * batch, (len(tokens) - 1) // seq_len)
    starts = np.arange(count) * seq_len
    return [_windows(tokens, starts[i : i + batch], seq_len) for i in range(0, count, batch) if i + batch <= count]
