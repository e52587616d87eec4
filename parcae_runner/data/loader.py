"""Cutting a token stream into training sequences, and the one sample order every run shares.

The order of training samples is a pure function of ``(data_seed, global sample index)``: global sample ``g`` is
chunk ``perm_e[g % num_chunks]`` where ``e = g // num_chunks`` is its epoch and ``perm_e`` a permutation drawn from
``PCG64([data_seed, e])``. Optimizer step ``s`` consumes samples ``[s*B, (s+1)*B)`` with ``B`` the effective batch,
however those are spread over devices and accumulation steps. So two architectures with the same data seed see the
same sequences in the same steps, the model seed never moves the data, and resuming at step ``k`` is
``start_step=k``: nothing to save but the step.

With Lightning, pass ``Trainer(use_distributed_sampler=False)``: ``StepSampler`` already shards by rank, and the
default would wrap it in a ``DistributedSampler`` and shard a second time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class TokenChunks(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Non-overlapping ``seq_len`` windows of a flat token stream, as next-token ``(x, y)`` pairs.

    Item ``i`` reads ``tokens[i*seq_len : i*seq_len + seq_len + 1]`` and returns ``x`` = its first ``seq_len``
    tokens and ``y`` = its last ``seq_len`` (``x`` shifted by one), both int64 of shape ``[seq_len]``. The
    ``len(tokens) - 1 - len(self) * seq_len`` trailing tokens that do not fill a window are never used.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int) -> None:
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be a flat stream, got shape {tokens.shape}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.seq_len)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"chunk {i} out of range for {len(self)} chunks")
        start = i * self.seq_len
        # np.array copies (and widens uint16 to int64): the tensor must not alias the read-only memmap
        chunk = torch.from_numpy(np.array(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))
        return chunk[:-1], chunk[1:]

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started by spawn/forkserver pickle the dataset: send a whole-file memmap as its path,
        # not as a copy of every token
        state = self.__dict__.copy()
        tokens = self.tokens
        if isinstance(tokens, np.memmap) and tokens.filename and _is_whole_file(tokens):
            state["tokens"] = ("memmap", str(tokens.filename), tokens.dtype.str, len(tokens))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        tokens = state["tokens"]
        if isinstance(tokens, tuple) and tokens[0] == "memmap":
            _, filename, dtype, length = tokens
            state["tokens"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=(length,))
        self.__dict__.update(state)


def _is_whole_file(tokens: np.memmap) -> bool:
    # a slice of a memmap keeps the parent's filename and offset, so only a view of the entire file is safe to reopen
    return tokens.offset == 0 and tokens.flags.c_contiguous and Path(tokens.filename).stat().st_size == tokens.nbytes


@functools.lru_cache(maxsize=4)
def _epoch_permutation(data_seed: int, num_chunks: int, epoch: int) -> np.ndarray:
    # cached: a step needs a few samples from one epoch's permutation, and drawing it costs O(num_chunks)
    perm = np.random.Generator(np.random.PCG64([data_seed, epoch])).permutation(num_chunks).astype(np.int64)
    perm.flags.writeable = False
    return perm


def sample_order(data_seed: int, num_chunks: int, start: int, count: int) -> np.ndarray:
    """Chunk indices of global samples ``start .. start+count-1``: int64, shape ``[count]``.

    Sample ``g`` is position ``g % num_chunks`` of epoch ``g // num_chunks``'s permutation, drawn from
    ``np.random.Generator(np.random.PCG64([data_seed, epoch]))``. Depends on nothing but its arguments.
    """
    if data_seed < 0:
        raise ValueError(f"data seed must be >= 0, got {data_seed}")
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks} (is the token stream shorter than seq_len + 1?)")
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    out = np.empty(count, dtype=np.int64)
    done = 0
    while done < count:
        epoch, offset = divmod(start + done, num_chunks)
        take = min(count - done, num_chunks - offset)
        out[done : done + take] = _epoch_permutation(data_seed, num_chunks, epoch)[offset : offset + take]
        done += take
    return out


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

    @property
    def samples_per_step(self) -> int:
        """``B``: samples one optimizer step consumes, over all ranks and micro-batches."""
        return self.micro_batch_size * self.accumulate * self.world_size

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.accumulate * self.micro_batch_size

    def __iter__(self) -> Iterator[int]:
        per_micro = self.micro_batch_size * self.world_size
        for step in range(self.start_step, self.end_step):
            # one draw per step: all of this step's samples, then this rank's slices of it
            order = sample_order(self.data_seed, self.num_chunks, step * self.samples_per_step, self.samples_per_step)
            for a in range(self.accumulate):
                lo = a * per_micro + self.rank * self.micro_batch_size
                yield from order[lo : lo + self.micro_batch_size].tolist()


def validation_indices(num_chunks: int, count: int) -> list[int]:
    """The first ``min(count, num_chunks)`` chunk indices: a fixed validation set, the same for every run."""
    return list(range(max(0, min(count, num_chunks))))
