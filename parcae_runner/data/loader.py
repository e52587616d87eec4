"""Cutting token streams into training sequences, and the per-rank view of the shared sample order.

The order itself lives in ``order.py``: global sample ``g`` is a pure function of ``(data_seed, g)``. Optimizer step
``s`` consumes samples ``[s*B, (s+1)*B)`` with ``B`` the effective batch, however those are spread over devices and
accumulation steps. So two architectures with the same data seed see the same sequences in the same steps, the model
seed never moves the data, and resuming at step ``k`` is ``start_step=k``: nothing to save but the step.

With Lightning, pass ``Trainer(use_distributed_sampler=False)``: ``StepSampler`` already shards by rank, and the
default would wrap it in a ``DistributedSampler`` and shard a second time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from parcae_runner.data.order import sample_order


class TokenChunks(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of ``seq_len + 1`` tokens of one or more token streams (shards), as next-token ``(x, y)`` pairs.

    Window ``j`` of a shard reads ``tokens[j*stride : j*stride + seq_len + 1]``: ``x`` its first ``seq_len`` tokens,
    ``y`` its last ``seq_len`` (``x`` shifted by one), both int64 of shape ``[seq_len]``. ``stride`` is ``seq_len``
    (the default: a window's last target is the next window's first input, no token unused) or ``seq_len + 1``
    (``overlap=False``: GPT-NeoX's disjoint 2,049-token samples, so a pre-shuffled Pythia corpus gives Pythia's own
    sequences). Windows are numbered shard after shard and never cross a shard's end; a shard's trailing tokens
    that do not fill a window are never used.
    """

    def __init__(self, tokens: np.ndarray | Sequence[np.ndarray], seq_len: int, overlap: bool = True) -> None:
        shards = [tokens] if isinstance(tokens, np.ndarray) else list(tokens)
        if any(s.ndim != 1 for s in shards):
            raise ValueError(f"tokens must be flat streams, got shapes {[s.shape for s in shards]}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.shards = shards
        self.seq_len = seq_len
        self.stride = seq_len if overlap else seq_len + 1
        counts = [max(0, (len(s) - 1 - seq_len) // self.stride + 1) if len(s) > seq_len else 0 for s in shards]
        # first window index of each shard, and the total at the end: [0, c0, c0+c1, ...]
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    @property
    def tokens(self) -> np.ndarray:
        """The single stream (for one-shard datasets)."""
        return self.shards[0]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"chunk {i} out of range for {len(self)} chunks")
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        start = (i - int(self.starts[shard])) * self.stride
        # np.array copies (and widens uint16 to int64): the tensor must not alias the read-only memmap
        window = self.shards[shard][start : start + self.seq_len + 1]
        chunk = torch.from_numpy(np.array(window, dtype=np.int64))
        return chunk[:-1], chunk[1:]

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn/forkserver pickle the dataset: send a whole-file memmap as its path,
        # not as a copy of every token
        state = self.__dict__.copy()
        state["shards"] = [
            ("memmap", str(t.filename), t.dtype.str, len(t))
            if isinstance(t, np.memmap) and t.filename and _is_whole_file(t)
            else t
            for t in self.shards
        ]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["shards"] = [
            np.memmap(t[1], dtype=np.dtype(t[2]), mode="r", shape=(t[3],))
            if isinstance(t, tuple) and t[0] == "memmap"
            else t
            for t in state["shards"]
        ]
        self.__dict__.update(state)


def _is_whole_file(tokens: np.memmap) -> bool:
    # a slice of a memmap keeps the parent's filename and offset, so only a view of the entire file is safe to reopen
    if tokens.filename is None:
        return False
    return tokens.offset == 0 and tokens.flags.c_contiguous and Path(tokens.filename).stat().st_size == tokens.nbytes


class StepSampler(Sampler[int]):
    """Chunk indices for one rank, for optimizer steps ``start_step .. end_step-1``, in the order it consumes them.

    Step ``s`` takes global samples ``[s*B, (s+1)*B)``, ``B = micro_batch_size * accumulate * world_size``.
    Micro-batch ``a`` of that step is the contiguous slice ``[s*B + a*B/accumulate, ...)`` of ``B/accumulate``
    samples, and rank ``r`` takes its ``micro_batch_size`` samples at offset ``r*micro_batch_size`` in that slice.
    Use with ``DataLoader(dataset, batch_size=micro_batch_size, sampler=...)``: consecutive groups of
    ``micro_batch_size`` indices are the micro-batches. ``len = (end_step - start_step) * accumulate *
    micro_batch_size``.
    """

    def __init__(
        self,
        num_chunks: int,
        data_seed: int,
        micro_batch_size: int,
        accumulate: int,
        world_size: int,
        rank: int,
        start_step: int,
        end_step: int,
        shuffle: bool = True,
    ) -> None:
        if num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
        if data_seed < 0:
            raise ValueError(f"data seed must be >= 0, got {data_seed}")
        if micro_batch_size < 1 or accumulate < 1 or world_size < 1:
            raise ValueError(
                f"micro_batch_size, accumulate and world_size must be >= 1, "
                f"got {micro_batch_size}, {accumulate}, {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if not 0 <= start_step <= end_step:
            raise ValueError(f"need 0 <= start_step <= end_step, got {start_step}, {end_step}")
        self.num_chunks = num_chunks
        self.data_seed = data_seed
        self.micro_batch_size = micro_batch_size
        self.accumulate = accumulate
        self.world_size = world_size
        self.rank = rank
        self.start_step = start_step
        self.end_step = end_step
        self.shuffle = shuffle

    @property
    def samples_per_step(self) -> int:
        """``B``: samples one optimizer step consumes, over all ranks and micro-batches."""
        return self.micro_batch_size * self.accumulate * self.world_size

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.accumulate * self.micro_batch_size

    def global_indices(self, step: int) -> list[int]:
        """Every sample of optimizer step ``step`` over all ranks, in the global order (independent of the ranks)."""
        return sample_order(
            self.data_seed, self.num_chunks, step * self.samples_per_step, self.samples_per_step, self.shuffle
        ).tolist()

    def __iter__(self) -> Iterator[int]:
        per_micro = self.micro_batch_size * self.world_size
        for step in range(self.start_step, self.end_step):
            # one draw per step: all of this step's samples, then this rank's slices of it
            order = sample_order(
                self.data_seed, self.num_chunks, step * self.samples_per_step, self.samples_per_step, self.shuffle
            )
            for a in range(self.accumulate):
                lo = a * per_micro + self.rank * self.micro_batch_size
                yield from order[lo : lo + self.micro_batch_size].tolist()


def validation_indices(num_chunks: int, count: int) -> list[int]:
    """The first ``min(count, num_chunks)`` chunk indices: a fixed validation set, the same for every run."""
    return list(range(max(0, min(count, num_chunks))))
