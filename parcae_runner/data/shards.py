"""Writing prepared shards: encode batches of documents in parallel, commit each shard atomically, resume.

A shard is committed by its ``shard-NNNNN.json``, written (atomically) after both of its token files were fsynced
and renamed into place; a shard without it is rewritten from scratch on the next run, so a half-written shard is
never used.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parcae_runner.data.errors import DataError
from parcae_runner.data.stream import open_tokens
from parcae_runner.util.files import atomic_write_text, fsync_file
from parcae_runner.util.log import log

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from parcae_runner.data.sources import Document

SPLITS = ("train", "val")
# documents per encode call and prefetch batch: enough work for every core, bounded memory (~ a few MB of text)
BATCH_DOCS = 1024
BATCH_CHARS = 8_000_000
PROGRESS_EVERY_S = 10.0


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.bin"


def read_shard_files(root: Path, split: str, shards: Iterable[int], dtype: np.dtype) -> list[np.ndarray]:
    return [open_tokens(root / shard_name(split, k), dtype) for k in shards]


def _batches(docs: Iterator[Document]) -> Iterator[list[Document]]:
    batch: list[Document] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc)
        if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def prefetch(docs: Iterator[Document], depth: int = 4) -> Iterator[Document]:
    """``docs``, read ``depth`` batches ahead in a thread, so reading and decompressing overlap with encoding (the
    Rust tokenizer releases the GIL). An exception in the reader is raised here, in order."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in _batches(docs):
                while not stop.is_set():
                    try:
                        q.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(("error", exc))

    thread = threading.Thread(target=read, name="prepare-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield from item
    finally:
        stop.set()


class Progress:
    """One line per interval: documents/s, tokens/s, input read and an ETA when the input size is known."""

    def __init__(self, enabled: bool, total_bytes: int | None) -> None:
        self.enabled, self.total = enabled, total_bytes
        self.start = self.last = time.perf_counter()
        self.docs = self.tokens = self.chars = 0

    def add(self, docs: int, tokens: int, chars: int) -> None:
        self.docs += docs
        self.tokens += tokens
        self.chars += chars
        now = time.perf_counter()
        if self.enabled and now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            log(self.line(now - self.start), "data")

    def line(self, elapsed: float) -> str:
        rate = self.chars / max(elapsed, 1e-9)
        eta = ""
        if self.total and rate > 0:
            left = max(0.0, (self.total - self.chars) / rate)
            eta = f", {self.chars / 1e6:.0f}/{self.total / 1e6:.0f} MB, ETA {left:.0f}s"
        return (
            f"{self.docs:,} docs ({self.docs / max(elapsed, 1e-9):,.0f}/s), {self.tokens:,} tokens "
            f"({self.tokens / max(elapsed, 1e-9):,.0f}/s){eta}"
        )


class ShardWriter:
    """Writes ``train-k.bin`` / ``val-k.bin`` / ``shard-k.json`` for each block of ``docs_per_shard`` documents."""

    def __init__(
        self,
        work: Path,
        tokenizer: Tokenizer,
        separator: int | None,
        dtype: np.dtype,
        token_bytes: np.ndarray,
        val_fraction: float,
        is_validation: Callable[[Document, float], bool],
        vocab_size: int,
        progress: bool,
        total_bytes: int | None,
    ) -> None:
        self.work, self.tokenizer, self.separator, self.dtype = work, tokenizer, separator, dtype
        self.token_bytes, self.val_fraction, self.is_validation = token_bytes, val_fraction, is_validation
        self.vocab_size = vocab_size
        self.progress = Progress(progress, total_bytes)
        # a literal "<|endoftext|>" inside a document is text, not a document boundary
        tokenizer.encode_special_tokens = True
        for stale in work.glob(".*.tmp"):  # left by a killed atomic write
            stale.unlink()

    def write_all(self, docs: Iterator[Document], docs_per_shard: int) -> list[dict[str, Any]]:
        """Every shard's counts, skipping (but reading past) shards a previous run completed."""
        shards = []
        for k in itertools.count():
            done = self.work / f"shard-{k:05d}.json"
            if done.is_file():
                meta = json.loads(done.read_text())
                for _ in itertools.islice(docs, meta["input_docs"]):
                    pass
            else:
                meta = self._write_shard(k, itertools.islice(docs, docs_per_shard))
                if meta is None:
                    break
            shards.append(meta)
            if meta["input_docs"] < docs_per_shard:
                break
        return shards

    def _encode(self, docs: list[Document]) -> np.ndarray:
        """``[sep, doc0..., sep, doc1..., ...]`` (no separator for pretokenized documents, taken as stored)."""
        if not docs:
            return np.empty(0, dtype=self.dtype)
        if isinstance(docs[0], np.ndarray):
            out = np.concatenate(docs)
            if out.size and (int(out.min()) < 0 or int(out.max()) >= self.vocab_size):
                raise DataError(
                    f"data.path: token id {int(out.max())} is outside the tokenizer's vocabulary of {self.vocab_size}"
                )
            return out.astype(self.dtype, copy=False)
        encodings = self.tokenizer.encode_batch_fast(docs, add_special_tokens=False)
        sep = np.array([self.separator], dtype=self.dtype)
        return np.concatenate([piece for enc in encodings for piece in (sep, np.asarray(enc.ids, self.dtype))])

    def _write_shard(self, k: int, docs: Iterator[Document]) -> dict[str, Any] | None:
        counts = {split: {"docs": 0, "tokens": 0, "bytes": 0} for split in SPLITS}
        tmp = {split: self.work / (shard_name(split, k) + ".partial") for split in SPLITS}
        files = {split: open(tmp[split], "wb") for split in SPLITS}
        n_input = 0
        try:
            for batch in _batches(docs):
                n_input += len(batch)
                parts: dict[str, list[Document]] = {"train": [], "val": []}
                for doc in batch:
                    parts["val" if self.is_validation(doc, self.val_fraction) else "train"].append(doc)
                batch_tokens = 0
                for split, split_docs in parts.items():
                    tokens = self._encode(split_docs)
                    batch_tokens += int(tokens.size)
                    tokens.tofile(files[split])
                    c = counts[split]
                    c["docs"] += len(split_docs)
                    c["tokens"] += int(tokens.size)
                    c["bytes"] += int(self.token_bytes[tokens].sum(dtype=np.int64)) if tokens.size else 0
                self.progress.add(len(batch), batch_tokens, sum(map(len, batch)))
        finally:
            for f in files.values():
                f.close()
        if n_input == 0:
            for path in tmp.values():
                path.unlink()
            return None
        for split in SPLITS:
            fsync_file(tmp[split])
            os.replace(tmp[split], self.work / shard_name(split, k))
        meta = {"shard": k, "input_docs": n_input, **counts}
        atomic_write_text(self.work / f"shard-{k:05d}.json", json.dumps(meta, sort_keys=True) + "\n")
        return meta
