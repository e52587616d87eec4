"""prepare_data: the split, the token files, the content-hash cache."""

from __future__ import annotations

import json
import pydoc_data.topics
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

import parcae_runner.data.prepare as prepare
from parcae_runner.config.schema import DataConfig
from parcae_runner.data import EOT_ID, DataError, PreparedData, load_prepared, prepare_data
from parcae_runner.data.corpus import embedded_documents
from parcae_runner.data.prepare import split_documents, token_dtype


def _paragraphs() -> list[str]:
    # a few hundred real-English documents: the help topics cut at blank lines
    paras = []
    for _, text in sorted(pydoc_data.topics.topics.items()):
        paras.extend(p.strip() for p in text.split("\n\n") if len(p.strip()) >= 200)
    return paras


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    lines = [json.dumps({"text": p}) for p in _paragraphs()]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = "A document with a literal <|endoftext|> inside it, kept as text."
    (root / "extra.txt").write_text(extra, encoding="utf-8")
    return root


def _cfg(corpus_dir: Path, cache: Path, **overrides: object) -> DataConfig:
    values = {"source": "text_files", "path": str(corpus_dir), "vocab_size": 512, "cache_dir": str(cache)}
    return DataConfig(**{**values, **overrides})


def _forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tokenizer was trained again: the cache was not used")

    monkeypatch.setattr(prepare, "train_tokenizer", fail)


def _decode_docs(data: PreparedData, stream: object) -> list[str]:
    tok = Tokenizer.from_file(str(data.tokenizer_path))
    ids = np.asarray(stream).tolist()
    assert ids[0] == EOT_ID
    docs, current = [], []
    for i in ids[1:] + [EOT_ID]:
        if i == EOT_ID:
            docs.append(tok.decode(current))
            current = []
        else:
            current.append(i)
    return docs


def test_prepare_writes_streams_that_decode_to_the_documents(corpus_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(corpus_dir, tmp_path, docs_per_shard=40)
    data = prepare_data(cfg, progress=False)
    assert data.dir.parent == tmp_path and data.dir.name.startswith("text_files-") and len(data.dir.name) == 27
    shards = len(data.meta["shards"])
    assert shards == -(-(len(_paragraphs()) + 1) // 40) > 2
    expected = {"tokenizer.json", "token_bytes.npy", "manifest.json"}
    for k in range(shards):
        expected |= {f"train-{k:05d}.bin", f"val-{k:05d}.bin", f"shard-{k:05d}.json"}
    assert {p.name for p in data.dir.iterdir()} == expected
    assert data.train.dtype == data.val.dtype == np.uint16 and data.meta["dtype"] == "uint16"
    assert all(isinstance(s, np.memmap) for s in data.train if len(s))
    assert data.vocab_size == data.meta["vocab_size"] <= 512 == data.model_vocab_size
    assert data.token_bytes.shape == (data.vocab_size,)
    assert np.asarray(data.train).max() < data.vocab_size

    from parcae_runner.data.corpus import text_file_documents

    train_docs, val_docs = split_documents(text_file_documents(str(corpus_dir)), cfg.val_fraction)
    assert _decode_docs(data, data.train) == train_docs
    assert _decode_docs(data, data.val) == val_docs
    for split, docs, stream in (("train", train_docs, data.train), ("val", val_docs, data.val)):
        assert data.meta[split]["docs"] == len(docs)
        assert data.meta[split]["tokens"] == stream.tokens == sum(s[split]["tokens"] for s in data.meta["shards"])
        # EOT is the only 0-byte token, so bytes == the documents' UTF-8 bytes
        assert data.meta[split]["bytes"] == sum(len(d.encode("utf-8")) for d in docs)
        assert int((np.asarray(stream) == EOT_ID).sum()) == len(docs)

    reopened = load_prepared(data.dir)
    assert reopened.meta == data.meta
    assert np.array_equal(np.asarray(reopened.train), np.asarray(data.train))


def test_second_call_uses_the_cache(corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare_data(_cfg(corpus_dir, tmp_path), progress=False)
    _forbid_training(monkeypatch)
    started = time.perf_counter()
    second = prepare_data(_cfg(corpus_dir, tmp_path), progress=False)
    elapsed = time.perf_counter() - started
    print(f"cached prepare_data: {elapsed * 1000:.0f} ms")
    assert second.dir == first.dir
    assert elapsed < 2.0
    # seq_len and the data seed do not change the tokens, so they share the directory
    assert prepare_data(_cfg(corpus_dir, tmp_path, seq_len=17, seed=99), progress=False).dir == first.dir
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.dir.name, first.dir.name + ".lock"]


def test_what_changes_tokens_changes_the_directory(corpus_dir: Path, tmp_path: Path) -> None:
    base = prepare_data(_cfg(corpus_dir, tmp_path), progress=False).dir
    other_vocab = prepare_data(_cfg(corpus_dir, tmp_path, vocab_size=600), progress=False).dir
    other_split = prepare_data(_cfg(corpus_dir, tmp_path, val_fraction=0.2), progress=False).dir
    assert len({base, other_vocab, other_split}) == 3

    changed = tmp_path / "changed"
    shutil.copytree(corpus_dir, changed)
    (changed / "extra.txt").write_text("A different extra document, long enough to matter.", encoding="utf-8")
    assert prepare_data(_cfg(changed, tmp_path / "cache2"), progress=False).dir.name != base.name


def test_val_and_train_hold_different_documents(corpus_dir: Path, tmp_path: Path) -> None:
    data = prepare_data(_cfg(corpus_dir, tmp_path, val_fraction=0.2), progress=False)
    train, val = set(_decode_docs(data, data.train)), set(_decode_docs(data, data.val))
    assert val and train
    assert not train & val
    # about val_fraction of the documents, by hash
    assert 0.1 < data.meta["val"]["docs"] / (data.meta["val"]["docs"] + data.meta["train"]["docs"]) < 0.3


def test_split_is_stable_per_document() -> None:
    docs = [f"document number {i}" for i in range(200)]
    train, val = split_documents(docs, 0.1)
    assert split_documents(list(reversed(docs)), 0.1) == (list(reversed(train)), list(reversed(val)))
    assert sorted(train + val) == sorted(docs) and not set(train) & set(val)
    assert 5 < len(val) < 40
    # duplicates always land together; val_fraction=0 puts nothing in val
    dup_train, dup_val = split_documents(docs + docs, 0.1)
    assert not set(dup_train) & set(dup_val)
    assert split_documents(docs, 0.0) == (docs, [])


def test_token_dtype() -> None:
    assert token_dtype(512) == np.uint16
    assert token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.uint32
    assert token_dtype(200_000) == np.uint32


def test_empty_val_split_opens(corpus_dir: Path, tmp_path: Path) -> None:
    data = prepare_data(_cfg(corpus_dir, tmp_path, val_fraction=0.0), progress=False)
    assert data.val.tokens == 0 and data.meta["val"] == {"docs": 0, "tokens": 0, "bytes": 0}


def test_a_second_preparer_waits_and_uses_the_first_ones_result(corpus_dir: Path, tmp_path: Path) -> None:
    import threading

    from parcae_runner.data.prepare import plan_data
    from parcae_runner.util.files import exclusive_lock

    cfg = _cfg(corpus_dir, tmp_path)
    final = plan_data(cfg).final
    results: list[PreparedData] = []
    with exclusive_lock(final.with_name(final.name + ".lock"), "test"):
        waiter = threading.Thread(target=lambda: results.append(prepare_data(cfg, progress=False)))
        waiter.start()
        waiter.join(timeout=1.0)
        # blocked on the lock: nothing prepared yet
        assert waiter.is_alive() and not final.exists() and not results
    waiter.join(timeout=60)
    assert results and results[0].dir == final
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name, final.name + ".lock"]


def test_progress_goes_to_stderr(corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(_cfg(corpus_dir, tmp_path), progress=True)
    prepare_data(_cfg(corpus_dir, tmp_path), progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "training a gpt2 tokenizer" in err and "using prepared" in err


def test_bad_config_names_the_key(corpus_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.vocab_size"):
        prepare_data(_cfg(corpus_dir, tmp_path, vocab_size=100), progress=False)
    with pytest.raises(DataError, match="data.val_fraction"):
        prepare_data(_cfg(corpus_dir, tmp_path, val_fraction=1.0), progress=False)
    with pytest.raises(DataError, match="data.path"):
        prepare_data(_cfg(tmp_path / "missing", tmp_path), progress=False)
    with pytest.raises(DataError, match="not a prepared data directory"):
        load_prepared(tmp_path)


@pytest.mark.slow
def test_full_embedded_corpus_at_vocab_4096(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(source="embedded", vocab_size=4096, cache_dir=str(tmp_path))
    embedded_documents()  # time the preparation, not the one-off stdlib imports
    started = time.perf_counter()
    data = prepare_data(cfg, progress=False)
    cold = time.perf_counter() - started
    _forbid_training(monkeypatch)
    started = time.perf_counter()
    cached = prepare_data(cfg, progress=False)
    warm = time.perf_counter() - started
    meta = data.meta
    tokens = meta["train"]["tokens"] + meta["val"]["tokens"]
    size = meta["train"]["bytes"] + meta["val"]["bytes"]
    print(
        f"\nembedded @4096: {meta['train']['docs'] + meta['val']['docs']} docs, {size / 1e6:.2f} MB, {tokens} tokens "
        f"(train {meta['train']['tokens']}, val {meta['val']['tokens']}), {size / tokens:.2f} bytes/token; "
        f"cold {cold:.2f}s, cached {warm * 1000:.0f} ms"
    )
    assert cached.dir == data.dir
    assert data.vocab_size == 4096
    assert size == sum(len(d.encode("utf-8")) for d in embedded_documents())
    assert meta["val"]["tokens"] > 10_000
