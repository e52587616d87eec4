"""Turn documents into token files on disk, once: split, train the tokenizer, tokenize, cache by content hash.

A prepared directory ``<cache_dir>/<source>-<hash16>/`` holds::

    train.bin, val.bin   flat token streams, raw uint16 (uint32 above 65535 tokens), <|endoftext|> before each document
    tokenizer.json       the byte-level BPE tokenizer, trained on the train documents only
    token_bytes.npy      int32 [vocab]: UTF-8 bytes per token id, for bits-per-byte
    meta.json            dtype, vocab size, per-split counts of documents/tokens/bytes, the content hash, the source

The hash covers what changes the tokens (the documents' text, ``vocab_size``, ``val_fraction``, ``FORMAT_VERSION``)
and nothing else: ``seq_len`` and the data seed only change how the streams are cut and ordered, so runs that differ
only in those share one directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers

from parcae_runner.data.corpus import load_documents
from parcae_runner.data.errors import DataError
from parcae_runner.data.tokenizer import EOT_ID, MIN_VOCAB_SIZE, token_byte_lengths, train_tokenizer
from parcae_runner.util.files import fsync_dir, fsync_file
from parcae_runner.util.log import log

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from parcae_runner.config.schema import DataConfig

# bump when the files' layout or meaning changes: old caches are then simply not found
FORMAT_VERSION = 1
# documents per encode_batch call: big enough to keep all cores busy, small enough to bound memory
ENCODE_BATCH_DOCS = 4096
FILES = ("train.bin", "val.bin", "tokenizer.json", "token_bytes.npy", "meta.json")


@dataclass
class PreparedData:
    """A prepared data directory, opened.

    ``train`` / ``val``: read-only flat token streams, shape ``[tokens]`` (``np.memmap``; an empty ``np.ndarray``
    for an empty split). ``token_bytes``: int32 ``[vocab_size]``. ``vocab_size`` is the tokenizer's real size, which
    can be below the requested ``data.vocab_size`` for a small corpus: size the embedding with it.
    """

    dir: Path
    vocab_size: int
    train: np.ndarray
    val: np.ndarray
    token_bytes: np.ndarray
    meta: dict[str, Any]
    tokenizer_path: Path

    def load_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))


def _log(progress: bool, message: str) -> None:
    if progress:
        log(message, "data")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def _doc_hash_fraction(text: str) -> float:
    # a stable hash (not Python's salted hash()): a document lands in the same split on every machine and run
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_documents(docs: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split into ``(train, val)`` by a stable hash of each document's text, keeping the input order within each.

    Identical documents always land on the same side, so validation never sees a training document. If the hash
    puts no document in val (a tiny corpus) but ``val_fraction > 0``, the document with the lowest hash goes there;
    likewise train always keeps at least one document.
    """
    fractions = [_doc_hash_fraction(d) for d in docs]
    is_val = [f < val_fraction for f in fractions]
    if len(docs) >= 2 and val_fraction > 0 and not any(is_val):
        is_val[min(range(len(docs)), key=fractions.__getitem__)] = True
    if docs and all(is_val):
        is_val[max(range(len(docs)), key=fractions.__getitem__)] = False
    train = [d for d, v in zip(docs, is_val, strict=True) if not v]
    val = [d for d, v in zip(docs, is_val, strict=True) if v]
    return train, val


def content_hash(docs: Sequence[str], vocab_size: int, val_fraction: float) -> str:
    """sha256 hex of everything that changes the prepared tokens."""
    h = hashlib.sha256()
    header = {"format_version": FORMAT_VERSION, "vocab_size": int(vocab_size), "val_fraction": float(val_fraction)}
    h.update(json.dumps(header, sort_keys=True).encode())
    for doc in docs:
        data = doc.encode("utf-8")
        # length-prefixed so that ["ab", "c"] and ["a", "bc"] hash differently
        h.update(struct.pack("<Q", len(data)))
        h.update(data)
    return h.hexdigest()


def _write_tokens(
    tokenizer: Tokenizer, docs: Sequence[str], dtype: np.dtype, token_bytes: np.ndarray, path: Path
) -> tuple[int, int]:
    """Encode ``docs`` into one stream ``[EOT, doc0..., EOT, doc1..., ...]`` written to ``path``.

    Returns ``(tokens, bytes)``: the stream's length and its UTF-8 bytes as bits-per-byte counts them (the sum of
    ``token_bytes`` over the stream; EOT counts 0). EOT goes before every document, the first included, so every
    document's first token is predicted from the same context (EOT) and counts toward the loss like the rest.
    """
    n_tokens = n_bytes = 0
    with open(path, "wb") as f:
        for start in range(0, len(docs), ENCODE_BATCH_DOCS):
            encodings = tokenizer.encode_batch(list(docs[start : start + ENCODE_BATCH_DOCS]), add_special_tokens=False)
            pieces = []
            for enc in encodings:
                pieces.append(np.array([EOT_ID], dtype=dtype))
                pieces.append(np.asarray(enc.ids, dtype=dtype))
            if pieces:
                chunk = np.concatenate(pieces)
                chunk.tofile(f)
                n_tokens += chunk.size
                n_bytes += int(token_bytes[chunk].sum(dtype=np.int64))
    return n_tokens, n_bytes


def _open_stream(path: Path, dtype: np.dtype) -> np.ndarray:
    # np.memmap refuses empty files; an empty split is legal (val_fraction=0, a one-document corpus)
    if path.stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def load_prepared(dir: str | os.PathLike[str]) -> PreparedData:
    """Open a prepared data directory (see the module docstring) without reading the token streams into memory."""
    path = Path(dir)
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise DataError(f"{str(path)!r} is not a prepared data directory (missing {', '.join(missing)})")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{str(path)!r} has format version {meta.get('format_version')}, expected {FORMAT_VERSION}; delete it"
        )
    dtype = np.dtype(meta["dtype"])
    return PreparedData(
        dir=path,
        vocab_size=int(meta["vocab_size"]),
        train=_open_stream(path / "train.bin", dtype),
        val=_open_stream(path / "val.bin", dtype),
        token_bytes=np.load(path / "token_bytes.npy"),
        meta=meta,
        tokenizer_path=path / "tokenizer.json",
    )


def _check_config(cfg: DataConfig) -> None:
    if cfg.vocab_size < MIN_VOCAB_SIZE:
        raise DataError(f"data.vocab_size={cfg.vocab_size} is too small; expected at least {MIN_VOCAB_SIZE}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} is out of range; expected 0 <= val_fraction < 1")


def _build(cfg: DataConfig, docs: Sequence[str], digest: str, out: Path, progress: bool) -> None:
    """Write every file of a prepared directory into ``out`` (a fresh temp dir), each fsynced."""
    train_docs, val_docs = split_documents(docs, cfg.val_fraction)
    _log(progress, f"split: {len(train_docs)} train / {len(val_docs)} val documents")
    _log(progress, f"training tokenizer (vocab {cfg.vocab_size}) on {len(train_docs)} documents...")
    tokenizer = train_tokenizer(train_docs, cfg.vocab_size)
    tokenizer.save(str(out / "tokenizer.json"))
    # only for tokenizing the corpus: a literal "<|endoftext|>" in a document is text, not a document boundary
    tokenizer.encode_special_tokens = True
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    token_bytes = token_byte_lengths(tokenizer)
    np.save(out / "token_bytes.npy", token_bytes)

    splits = {}
    for name, split_docs in (("train", train_docs), ("val", val_docs)):
        _log(progress, f"tokenizing {len(split_docs)} {name} documents...")
        n_tokens, n_bytes = _write_tokens(tokenizer, split_docs, dtype, token_bytes, out / f"{name}.bin")
        splits[name] = {"docs": len(split_docs), "tokens": n_tokens, "bytes": n_bytes}

    meta = {
        "format_version": FORMAT_VERSION,
        "source": cfg.source,
        "content_hash": digest,
        "vocab_size": vocab_size,
        "requested_vocab_size": cfg.vocab_size,
        "val_fraction": cfg.val_fraction,
        "dtype": dtype.name,
        "eot_id": EOT_ID,
        "train": splits["train"],
        "val": splits["val"],
        "tokenizers_version": tokenizers.__version__,
        "python_version": sys.version.split()[0],
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in FILES:
        fsync_file(out / name)
    fsync_dir(out)


def prepare_data(cfg: DataConfig, progress: bool = True) -> PreparedData:
    """Prepare (or find in the cache) the token files for ``cfg`` and open them.

    The first call for given documents, ``vocab_size`` and ``val_fraction`` splits, trains and tokenizes, writing
    ``<cache_dir>/<source>-<hash16>/`` atomically (temp dir next to it, fsync, rename); later calls only read the
    documents to hash them and open the cached files. Safe to race: when another process renames its copy into place
    first, its copy is used and ours is discarded.
    """
    _check_config(cfg)
    docs = load_documents(cfg)
    digest = content_hash(docs, cfg.vocab_size, cfg.val_fraction)
    cache_dir = Path(cfg.cache_dir).expanduser()
    final = cache_dir / f"{cfg.source}-{digest[:16]}"
    if final.is_dir():
        _log(progress, f"using cached {final}")
        return load_prepared(final)

    started = time.perf_counter()
    size_mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    _log(progress, f"preparing {len(docs)} {cfg.source} documents ({size_mb:.1f} MB) into {final}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache_dir))
    try:
        # mkdtemp makes the dir private (0700); a shared cache needs the usual umask-governed permissions
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        _build(cfg, docs, digest, tmp, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            # rename onto an existing non-empty directory fails: another process got there first; use theirs
            if not final.is_dir():
                raise
            _log(progress, f"another process prepared {final} first; using it")
        else:
            fsync_dir(cache_dir)
            _log(progress, f"prepared {final} in {time.perf_counter() - started:.1f}s")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_prepared(final)
