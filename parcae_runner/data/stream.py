"""A split of prepared tokens: its shards as read-only memory maps, one logical stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def open_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    """A token file as a read-only memmap (an empty array for an empty file: np.memmap refuses those)."""
    if path.stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class TokenStream(Sequence[np.ndarray]):
    """The shards of one split, in order. ``len()`` is the number of shards; ``tokens`` the total token count.

    Training windows never cross a shard boundary (each shard is a run of whole documents), so the loader indexes
    shards and windows within them; ``np.asarray(stream)`` concatenates (for small corpora and tests only).
    """

    def __init__(self, shards: Sequence[np.ndarray]) -> None:
        self.shards = list(shards)

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def dtype(self) -> np.dtype:
        return self.shards[0].dtype if self.shards else np.dtype(np.uint16)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.shards[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.shards)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        out = np.concatenate(self.shards) if self.shards else np.empty(0, dtype=self.dtype)
        return out.astype(dtype) if dtype is not None else out
