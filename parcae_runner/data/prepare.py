"""Turn a corpus into token shards on disk, once: streamed, parallel, resumable, with a manifest.

A prepared directory ``<cache_dir>/<source>-<key16>/`` holds::

    tokenizer.json            the tokenizer (trained on the training split, or the pretrained one, copied)
    token_bytes.npy           int32 [vocab]: UTF-8 bytes per token id, for bits-per-byte
    train-00000.bin, ...      flat token streams, raw uint16 (uint32 above 65,535 ids), one per shard and split;
    val-00000.bin, ...        the separator (end of document) before each document
    shard-00000.json, ...     each shard's counts; written last, so a shard without it is never used
    manifest.json             source and its fingerprint, tokenizer hash, the split rule, totals and every shard

Shard ``k`` holds documents ``[k*D, (k+1)*D)`` of the source (``D = data.docs_per_shard``), each put in train or
val by a hash of its content, so the output does not depend on how often preparation was interrupted: a killed
``prepare`` restarts in ``<dir>.partial/`` from its completed shards and ends byte-identical to an uninterrupted one.
One process prepares a directory at a time (a lock beside it); others wait and then use its result.

The key covers what changes the tokens (the source's fingerprint, the tokenizer, ``val_fraction``,
``docs_per_shard``, ``FORMAT_VERSION``); ``seq_len`` and the data seed only change how the streams are cut and
ordered, so runs that differ only in those share one directory.

Tokenising runs in parallel on every core inside ``tokenizers``' Rust thread pool (``encode_batch_fast``): no
process pool, no pickling of documents, and the reading of the next batch overlaps the encoding of this one.
``bench/data.py`` measures it against ``datasets.map(batched=True, num_proc=cores)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers

from parcae_runner.data.errors import DataError
from parcae_runner.data.pretrained import TRAIN, load_pretrained, padded_vocab_size
from parcae_runner.data.shards import ShardWriter, prefetch, read_shard_files
from parcae_runner.data.sources import Document, Source, source_for
from parcae_runner.data.stream import TokenStream
from parcae_runner.data.tokenizer import MIN_VOCAB_SIZE, RECIPES, token_byte_lengths, train_tokenizer
from parcae_runner.util.files import atomic_write_text, exclusive_lock, fsync_dir
from parcae_runner.util.log import log

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from parcae_runner.config.schema import DataConfig

# bump when the files' layout or meaning changes: old caches are then simply not found
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
VAL_RULE = "blake2b-64 of the document (UTF-8 text, or token bytes) / 2**64 < val_fraction"


@dataclass
class PreparedData:
    """A prepared data directory, opened.

    ``train`` / ``val``: the splits' shards as read-only memmaps. ``vocab_size`` is the tokenizer's real size
    (which can be below the requested ``data.vocab_size`` for a small corpus); ``model_vocab_size`` is the model's
    embedding size: ``data.vocab_size`` for a pretrained tokenizer when set, else the tokenizer's rounded up to
    ``data.pad_vocab_multiple``. ``eos_id``: the separator before each document.
    """

    dir: Path
    vocab_size: int
    train: TokenStream
    val: TokenStream
    token_bytes: np.ndarray
    meta: dict[str, Any]
    tokenizer_path: Path
    model_vocab_size: int = 0

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    def load_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def _doc_hash_fraction(doc: Document) -> float:
    # a stable hash (not Python's salted hash()): a document lands in the same split on every machine and run
    data = doc.tobytes() if isinstance(doc, np.ndarray) else doc.encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2**64


def is_validation(doc: Document, val_fraction: float) -> bool:
    """The split rule (``VAL_RULE``): identical documents always land on the same side."""
    return val_fraction > 0 and _doc_hash_fraction(doc) < val_fraction


def split_documents(docs: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """``(train, val)`` by :func:`is_validation`, keeping the input order within each."""
    val = [is_validation(d, val_fraction) for d in docs]
    return [d for d, v in zip(docs, val, strict=True) if not v], [d for d, v in zip(docs, val, strict=True) if v]


def load_prepared(dir: str | os.PathLike[str]) -> PreparedData:
    """Open a prepared data directory (see the module docstring) without reading the token streams into memory."""
    path = Path(dir)
    if not (path / MANIFEST).is_file():
        raise DataError(f"{str(path)!r} is not a prepared data directory (no {MANIFEST})")
    meta = json.loads((path / MANIFEST).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{str(path)!r} has format {meta.get('format_version')}, expected {FORMAT_VERSION}; delete it")
    dtype = np.dtype(meta["dtype"])
    shards = range(len(meta["shards"]))
    return PreparedData(
        dir=path,
        vocab_size=int(meta["vocab_size"]),
        train=TokenStream(read_shard_files(path, "train", shards, dtype)),
        val=TokenStream(read_shard_files(path, "val", shards, dtype)),
        token_bytes=np.load(path / "token_bytes.npy"),
        meta=meta,
        tokenizer_path=path / "tokenizer.json",
        model_vocab_size=int(meta["model_vocab_size"]),
    )


@dataclass
class Plan:
    """What preparing ``cfg`` means, decided before anything is written: source, tokenizer, key and paths."""

    cfg: DataConfig
    source: Source
    pretrained: Any  # LoadedTokenizer | None
    key: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()

    @property
    def final(self) -> Path:
        return Path(self.cfg.cache_dir).expanduser() / f"{self.cfg.source}-{self.digest[:16]}"


def _check_vocab(cfg: DataConfig, tokenizer_size: int) -> None:
    if cfg.tokenizer != TRAIN and cfg.vocab_size is not None and cfg.vocab_size < tokenizer_size:
        raise DataError(
            f"data.vocab_size={cfg.vocab_size} is smaller than the tokenizer's {tokenizer_size} tokens; "
            f"set data.vocab_size=null (pads to {padded_vocab_size(tokenizer_size, cfg.pad_vocab_multiple)}) or more"
        )


def plan_data(cfg: DataConfig) -> Plan:
    """Check everything about ``cfg.data`` that can be checked without writing: the source opens and holds a
    document with the text field, the tokenizer loads, the vocabulary fits the model. Raises ``DataError``."""
    if cfg.tokenizer == TRAIN and (cfg.vocab_size or 0) < MIN_VOCAB_SIZE:
        raise DataError(f"data.vocab_size={cfg.vocab_size} is too small; expected at least {MIN_VOCAB_SIZE}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} is out of range; expected 0 <= val_fraction < 1")
    if cfg.tokenizer_recipe not in RECIPES:
        raise DataError(f"data.tokenizer_recipe={cfg.tokenizer_recipe!r}; expected one of {', '.join(RECIPES)}")
    source = source_for(cfg)
    if cfg.tokenizer == TRAIN and source.pretokenized:
        raise DataError("data.tokenizer=train: pretokenized data needs the tokenizer its ids come from")
    # both halves are checked, so a machine missing the dataset and the tokenizer hears of both at once
    problems = []
    try:
        source.check()
    except DataError as exc:
        problems.append(str(exc))
    pretrained = None
    tokenizer_key: dict[str, Any] = {
        "train": cfg.tokenizer_recipe,
        "vocab_size": int(cfg.vocab_size or 0),
        "max_chars": int(cfg.tokenizer_train_chars),
    }
    if cfg.tokenizer != TRAIN:
        try:
            pretrained = load_pretrained(cfg.tokenizer, cfg.eos_token)
            _check_vocab(cfg, pretrained.tokenizer.get_vocab_size())
            tokenizer_key = {"sha256": pretrained.sha256, "eos_id": pretrained.separator_id}
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError("; and ".join(problems))
    key = {
        "format_version": FORMAT_VERSION,
        "source": source.name,
        "fingerprint": source.fingerprint(),
        "tokenizer": tokenizer_key,
        "val_fraction": float(cfg.val_fraction),
        "docs_per_shard": int(cfg.docs_per_shard),
    }
    return Plan(cfg, source, pretrained, key)


def _training_text(plan: Plan) -> Iterator[str]:
    for doc in plan.source.documents():
        if isinstance(doc, str) and not is_validation(doc, plan.cfg.val_fraction):
            yield doc


def _tokenizer(plan: Plan, work: Path, progress: bool) -> tuple[Tokenizer, int]:
    """The tokenizer (trained once and kept in ``work`` across restarts) and its separator id."""
    from tokenizers import Tokenizer

    path = work / "tokenizer.json"
    if plan.pretrained is not None:
        tokenizer, separator = plan.pretrained.tokenizer, plan.pretrained.separator_id
    elif path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
        separator = tokenizer.token_to_id(RECIPES[plan.cfg.tokenizer_recipe].separator)
    else:
        recipe = RECIPES[plan.cfg.tokenizer_recipe]
        if progress:
            log(f"training a {recipe.name} tokenizer (vocab {plan.cfg.vocab_size}) on the training split...", "data")
        tokenizer = train_tokenizer(
            _training_text(plan), int(plan.cfg.vocab_size or 0), recipe.name, plan.cfg.tokenizer_train_chars
        )
        separator = tokenizer.token_to_id(recipe.separator)
    if not path.is_file():
        atomic_write_text(path, tokenizer.to_str(pretty=True))
        np.save(work / "token_bytes.npy", token_byte_lengths(tokenizer))
    return tokenizer, int(separator)


def _manifest(
    plan: Plan, tokenizer: Tokenizer, tokenizer_sha256: str, separator: int, shards: list[dict[str, Any]]
) -> dict[str, Any]:
    vocab = tokenizer.get_vocab_size()
    model_vocab = plan.cfg.vocab_size if plan.pretrained is not None and plan.cfg.vocab_size else None
    totals = {
        split: {k: sum(s[split][k] for s in shards) for k in ("docs", "tokens", "bytes")} for split in ("train", "val")
    }
    return {
        "format_version": FORMAT_VERSION,
        "source": plan.source.name,
        "source_description": plan.source.describe(),
        "key": plan.key,
        "tokenizer": plan.cfg.tokenizer,
        "tokenizer_sha256": tokenizer_sha256,
        "vocab_size": vocab,
        "model_vocab_size": int(model_vocab or padded_vocab_size(vocab, plan.cfg.pad_vocab_multiple)),
        "pad_vocab_multiple": plan.cfg.pad_vocab_multiple,
        "requested_vocab_size": plan.cfg.vocab_size,
        "dtype": token_dtype(vocab).name,
        "eos_id": separator,
        "separator": "before every document" if not plan.source.pretokenized else "none added (pretokenized)",
        "val_fraction": plan.cfg.val_fraction,
        "val_rule": VAL_RULE,
        "docs_per_shard": plan.cfg.docs_per_shard,
        "train": totals["train"],
        "val": totals["val"],
        "shards": shards,
        "tokenizers_version": tokenizers.__version__,
        "python_version": sys.version.split()[0],
    }


def _build(plan: Plan, work: Path, progress: bool) -> None:
    tokenizer, separator = _tokenizer(plan, work, progress)
    vocab = tokenizer.get_vocab_size()
    writer = ShardWriter(
        work,
        tokenizer,
        separator if not plan.source.pretokenized else None,
        token_dtype(vocab),
        np.load(work / "token_bytes.npy"),
        plan.cfg.val_fraction,
        is_validation,
        vocab,
        progress=progress,
        total_bytes=plan.source.size_bytes(),
    )
    shards = writer.write_all(prefetch(plan.source.documents()), plan.cfg.docs_per_shard)
    if sum(s["train"]["tokens"] for s in shards) == 0:
        raise DataError(f"data.source={plan.source.name}: {plan.source.describe()} yields no training tokens")
    tokenizer_sha256 = hashlib.sha256((work / "tokenizer.json").read_bytes()).hexdigest()
    manifest = _manifest(plan, tokenizer, tokenizer_sha256, separator, shards)
    atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def prepare_data(cfg: DataConfig, progress: bool = True, plan: Plan | None = None) -> PreparedData:
    """Prepare (or find in the cache) the token shards for ``cfg`` and open them.

    Everything that can be wrong with the input is found by :func:`plan_data` before anything is written. The
    work happens in ``<final>.partial/`` under a lock; completed shards survive a kill and are reused; the finished
    directory is renamed into place at the end, so a directory named ``<source>-<key16>`` is always complete.
    """
    plan = plan or plan_data(cfg)
    final = plan.final
    if (final / MANIFEST).is_file():
        if progress:
            log(f"using prepared {final}", "data")
        return load_prepared(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(final.with_name(final.name + ".lock"), f"preparing {final.name}"):
        if not (final / MANIFEST).is_file():
            work = final.with_name(final.name + ".partial")
            work.mkdir(exist_ok=True)
            started = time.perf_counter()
            if progress:
                log(f"preparing {plan.source.describe()} into {final}", "data")
            _build(plan, work, progress)
            os.rename(work, final)
            fsync_dir(final.parent)
            if progress:
                log(f"prepared {final} in {time.perf_counter() - started:.1f}s", "data")
    return load_prepared(final)
