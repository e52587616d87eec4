"""Token batches for distillation: random training windows seeded by (seed, step) and fixed held-out windows.

The tokens are either the project's prepared data (``tokenizer=data``: its own BPE, ``data.*`` overrides; the demo,
whose teacher is trained on it) or the documents ``data.source`` names tokenised with the teacher's own tokenizer
(``tokenizer=teacher``, for a published teacher), split into train / held-out by a stable hash of each document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from parcae_runner.config import compose_run_config
from parcae_runner.data import load_documents, prepare_data

# the fraction of documents held out (by a stable hash of the text) when tokenising with the teacher's tokenizer
HELDOUT_FRACTION = 0.05


@dataclass
class TokenStreams:
    """Flat token streams ``[tokens]`` for training and held-out windows, and the vocabulary they index."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int


def prepare(data_overrides: dict[str, Any]) -> tuple[TokenStreams, int]:
    """The prepared data and its ``seq_len``, from ``data.*`` overrides of the run config."""
    cfg = compose_run_config([f"data.{k}={v}" for k, v in data_overrides.items()])
    data = prepare_data(cfg.data, progress=False)
    # distillation corpora are small (a teacher's sample); the shards are joined into one flat stream per split
    train, val = np.asarray(data.train), np.asarray(data.val)
    return TokenStreams(train, val, data.model_vocab_size), int(cfg.data.seq_len)


def _heldout(doc: str) -> bool:
    digest = hashlib.sha256(doc.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HELDOUT_FRACTION


def tokenize_with(folder: str, data_overrides: dict[str, Any]) -> tuple[TokenStreams, int]:
    """The documents of ``data.*`` tokenised by the tokenizer saved in the teacher's folder (EOS between them)."""
    from transformers import AutoTokenizer

    cfg = compose_run_config([f"data.{k}={v}" for k, v in data_overrides.items()])
    tok = AutoTokenizer.from_pretrained(folder)
    sep = [tok.eos_token_id] if tok.eos_token_id is not None else []
    streams: dict[bool, list[int]] = {False: [], True: []}
    for doc in load_documents(cfg.data):
        streams[_heldout(doc)].extend(tok(doc, add_special_tokens=False)["input_ids"] + sep)
    train, val = (np.asarray(streams[k], dtype=np.int64) for k in (False, True))
    return TokenStreams(train, val, len(tok)), int(cfg.data.seq_len)


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[Tensor, Tensor]:
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    batch = torch.from_numpy(rows)
    return batch[:, :-1], batch[:, 1:]  # x, y: [B, T]


def train_batch(data: TokenStreams, seq_len: int, batch: int, seed: int, step: int) -> tuple[Tensor, Tensor]:
    """``batch`` random windows of the training split; a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(data.train) - seq_len - 1, size=batch)
    return _windows(data.train, starts, seq_len)


def heldout_batches(data: TokenStreams, seq_len: int, batch: int, n: int) -> list[tuple[Tensor, Tensor]]:
    """``n`` batches of consecutive windows from the validation split (the same for every run)."""
    tokens = data.val if len(data.val) > (seq_len + 1) * batch else data.train[-(seq_len + 1) * batch * n - 1 :]
    count = min(n * batch, (len(tokens) - 1) // seq_len)
    starts = np.arange(count) * seq_len
    return [_windows(tokens, starts[i : i + batch], seq_len) for i in range(0, count, batch) if i + batch <= count]
