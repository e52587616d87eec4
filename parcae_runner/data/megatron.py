"""Megatron-LM / GPT-NeoX indexed datasets (``.bin`` + ``.idx``), read without re-tokenising.

The format of Pythia's pre-shuffled Pile and of Megatron's ``preprocess_data.py``. ``<prefix>.bin`` is the token
ids of every sequence back to back; ``<prefix>.idx`` is, little-endian:

    magic     9 bytes  b"MMIDIDX\\x00\\x00"
    version   u64      1
    dtype     u8       1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16
    sequences u64      S
    documents u64      D + 1
    lengths   int32[S]     tokens per sequence
    pointers  int64[S]     byte offset of each sequence in .bin
    doc_index int64[D + 1] sequence index where each document starts (0 first, S last)

(megatron/core/datasets/indexed_dataset.py; GPT-NeoX's megatron/data/indexed_dataset.py is the same format.)
A document here is the run of sequences between two ``doc_index`` entries; its tokens are yielded as stored, with
no separator added (the writer decided whether documents end in an end-of-document token).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from parcae_runner.data.errors import DataError

MAGIC = b"MMIDIDX\x00\x00"
DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
_HEADER = len(MAGIC) + 8 + 1 + 8 + 8


class IndexedFile:
    """One ``.bin``/``.idx`` pair, opened read-only with both files memory-mapped; checked against each other."""

    def __init__(self, prefix: str | Path) -> None:
        prefix = Path(prefix)
        self.bin_path, self.idx_path = prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".idx")
        for path in (self.bin_path, self.idx_path):
            if not path.is_file():
                raise DataError(f"data.path: {path} does not exist; expected a Megatron .bin/.idx pair")
        idx = np.memmap(self.idx_path, dtype=np.uint8, mode="r")
        if len(idx) < _HEADER or bytes(idx[: len(MAGIC)]) != MAGIC:
            raise DataError(f"data.path: {self.idx_path} is not a Megatron .idx file (bad magic)")
        version, code = int(idx[9:17].view("<u8")[0]), int(idx[17])
        n_seq, n_doc = (int(v) for v in idx[18:34].view("<u8"))
        if version != 1 or code not in DTYPES:
            raise DataError(f"data.path: {self.idx_path} has version {version} / dtype code {code}; expected 1 / 1-8")
        self.dtype = np.dtype(DTYPES[code])
        end = _HEADER + 4 * n_seq + 8 * n_seq + 8 * n_doc
        if len(idx) < end:
            raise DataError(f"data.path: {self.idx_path} is truncated ({len(idx)} bytes, its header needs {end})")
        self.lengths = idx[_HEADER : _HEADER + 4 * n_seq].view("<i4")
        self.pointers = idx[_HEADER + 4 * n_seq : _HEADER + 12 * n_seq].view("<i8")
        self.doc_index = idx[_HEADER + 12 * n_seq : end].view("<i8")
        self._check(n_seq)
        size = self.bin_path.stat().st_size
        self.tokens = np.memmap(self.bin_path, dtype=self.dtype, mode="r") if size else np.empty(0, self.dtype)

    def _check(self, n_seq: int) -> None:
        size = self.bin_path.stat().st_size
        need = int(self.pointers[-1]) + int(self.lengths[-1]) * self.dtype.itemsize if n_seq else 0
        mismatch = None
        if size != need:
            mismatch = f"the index describes {need} bytes of tokens, the .bin has {size}"
        elif n_seq and not np.array_equal(
            self.pointers[1:], self.pointers[:-1] + self.lengths[:-1].astype(np.int64) * self.dtype.itemsize
        ):
            mismatch = "its sequence pointers do not follow its lengths"
        elif len(self.doc_index) < 1 or self.doc_index[0] != 0 or self.doc_index[-1] != n_seq:
            mismatch = "its document index does not span its sequences"
        if mismatch:
            raise DataError(f"data.path: {self.idx_path} does not match {self.bin_path.name} ({mismatch})")

    @property
    def num_documents(self) -> int:
        return len(self.doc_index) - 1

    def document(self, i: int) -> np.ndarray:
        """Document ``i``'s tokens, as stored (a read-only view)."""
        first, last = int(self.doc_index[i]), int(self.doc_index[i + 1])
        if first == last:
            return self.tokens[:0]
        start = int(self.pointers[first]) // self.dtype.itemsize
        stop = int(self.pointers[last - 1]) // self.dtype.itemsize + int(self.lengths[last - 1])
        return self.tokens[start:stop]

    def documents(self) -> Iterator[np.ndarray]:
        for i in range(self.num_documents):
            yield self.document(i)


def indexed_prefixes(path: str | Path) -> list[Path]:
    """The ``.bin/.idx`` prefixes ``path`` names: a prefix itself, or a folder's pairs in sorted order."""
    root = Path(path).expanduser()
    if root.is_dir():
        prefixes = sorted(p.with_suffix("") for p in root.rglob("*.idx"))
        if not prefixes:
            raise DataError(f"data.path={str(path)!r} holds no .idx files; expected Megatron .bin/.idx pairs")
        return prefixes
    for suffix in (".bin", ".idx"):
        if root.suffix == suffix:
            root = root.with_suffix("")
    return [root]
