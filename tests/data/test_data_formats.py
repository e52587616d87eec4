"""Every source format, built as real files from the embedded text, yields the direct path's token stream.

The direct path is written here from the contract, independently of the package: each document's ids from the
tokenizer itself, the separator before each, train/val by blake2b-64 of the document. Files are written by the
formats' own tools: pyarrow (Parquet, zstd), gzip, ``datasets`` (``save_to_disk``, ``load_dataset`` of a local
folder) and megatron-core's ``IndexedDatasetBuilder`` (the ``.bin/.idx`` peer writer).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from parcae_runner.config.schema import DataConfig
from parcae_runner.data import embedded_documents, prepare_data, train_tokenizer

N_DOCS = 400
VAL = 0.1
SEP = 0  # <|endoftext|> of the gpt2 recipe


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return embedded_documents()[:N_DOCS]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory, docs: list[str]) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(docs, 1024).save(str(path))
    return path


def _is_val(data: bytes, fraction: float) -> bool:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2**64 < fraction


def _direct(docs: list[str], tokenizer_file: Path, fraction: float) -> dict[str, list[int]]:
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.encode_special_tokens = True
    out: dict[str, list[int]] = {"train": [], "val": []}
    for doc in docs:
        split = "val" if _is_val(doc.encode("utf-8"), fraction) else "train"
        out[split] += [SEP, *tok.encode(doc, add_special_tokens=False).ids]
    return out


def _prepared(tmp_path: Path, tokenizer_file: Path, **values: object) -> dict[str, list[int]]:
    cfg = DataConfig(
        **{"tokenizer": str(tokenizer_file), "cache_dir": str(tmp_path / "cache"), "docs_per_shard": 97, **values}
    )
    data = prepare_data(cfg, progress=False)
    return {"train": np.asarray(data.train).tolist(), "val": np.asarray(data.val).tolist()}


def _write_jsonl(path: Path, docs: list[str], field: str = "text") -> None:
    lines = "".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)).encode("utf-8")
    if path.name.endswith(".zst"):
        with pa.output_stream(str(path), compression="zstd") as f:
            f.write(lines)
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(lines))
    else:
        path.write_bytes(lines)


def _thirds(docs: list[str]) -> list[list[str]]:
    k = len(docs) // 3
    return [docs[:k], docs[k : 2 * k], docs[2 * k :]]


def test_jsonl_zst_gz_and_text_files(tmp_path: Path, docs: list[str], tokenizer_file: Path) -> None:
    expected = _direct(docs, tokenizer_file, VAL)
    assert expected["val"] and expected["train"]
    folder = tmp_path / "jsonl"
    folder.mkdir()
    parts = _thirds(docs)
    _write_jsonl(folder / "a.jsonl.zst", parts[0], "body")
    _write_jsonl(folder / "b.jsonl.gz", parts[1], "body")
    _write_jsonl(folder / "c.jsonl", parts[2], "body")
    got = _prepared(tmp_path, tokenizer_file, source="jsonl", path=str(folder), text_field="body", val_fraction=VAL)
    assert got == expected
    plain = tmp_path / "plain.jsonl"
    _write_jsonl(plain, docs)
    assert _prepared(tmp_path, tokenizer_file, source="text_files", path=str(plain), val_fraction=VAL) == expected


def test_parquet_shards(tmp_path: Path, docs: list[str], tokenizer_file: Path) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    for i, part in enumerate(_thirds(docs)):
        table = pa.table({"id": list(range(len(part))), "text": part})
        # several row groups per file: the reader streams them in order
        pq.write_table(table, folder / f"train-{i:05d}.parquet", row_group_size=37)
    got = _prepared(tmp_path, tokenizer_file, source="parquet", path=str(folder), val_fraction=VAL)
    assert got == _direct(docs, tokenizer_file, VAL)


def test_hf_save_to_disk_and_load_dataset_folder(tmp_path: Path, docs: list[str], tokenizer_file: Path) -> None:
    import datasets

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": docs, "n": list(range(len(docs)))}).save_to_disk(str(saved))
    expected = _direct(docs, tokenizer_file, VAL)
    assert _prepared(tmp_path, tokenizer_file, source="hf", dataset=str(saved), val_fraction=VAL) == expected

    folder = tmp_path / "hf_folder"
    (folder / "data").mkdir(parents=True)
    for i, part in enumerate(_thirds(docs)):
        pq.write_table(pa.table({"text": part}), folder / "data" / f"train-{i:05d}-of-00003.parquet")
    got = _prepared(tmp_path, tokenizer_file, source="hf", dataset=str(folder), split="train", val_fraction=VAL)
    assert got == expected


@pytest.mark.filterwarnings("ignore:Transformer Engine and Apex")
def test_megatron_bin_idx_from_the_peer_writer(tmp_path: Path, docs: list[str], tokenizer_file: Path) -> None:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.encode_special_tokens = True
    folder = tmp_path / "megatron"
    folder.mkdir()
    for i, part in enumerate(_thirds(docs)):
        prefix = str(folder / f"part{i}_text_document")
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
        for doc in part:
            # what Megatron's preprocess_data.py --append-eod would store, with the separator first as ours
            ids = [SEP, *tok.encode(doc, add_special_tokens=False).ids]
            builder.add_document(torch.tensor(ids), [len(ids)])
        builder.finalize(prefix + ".idx")
    # documents are taken as stored (no separator added); val_fraction=0 keeps the whole stream in train
    got = _prepared(tmp_path, tokenizer_file, source="pretokenized", path=str(folder), val_fraction=0.0)
    assert got == {"train": _direct(docs, tokenizer_file, 0.0)["train"], "val": []}
    # with a split, documents go by the hash of their stored token bytes
    split = _prepared(tmp_path, tokenizer_file, source="pretokenized", path=str(folder), val_fraction=VAL)
    assert sorted(split["train"] + split["val"]) == sorted(got["train"]) and split["val"]


def test_pretrained_folder_matches_transformers_auto_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    docs = embedded_documents()[:1000]
    # a tokenizer saved the Hugging Face way: tokenizer.json + tokenizer_config.json + special_tokens_map.json
    folder = tmp_path / "hf_tokenizer"
    fast = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(docs, 2048), eos_token="<|endoftext|>")
    fast.save_pretrained(str(folder))
    corpus = tmp_path / "docs.jsonl"
    _write_jsonl(corpus, docs)
    cfg = DataConfig(
        source="jsonl",
        path=str(corpus),
        tokenizer=str(folder),
        vocab_size=None,
        val_fraction=0.0,
        cache_dir=str(tmp_path / "c"),
    )
    data = prepare_data(cfg, progress=False)
    auto = AutoTokenizer.from_pretrained(str(folder))
    expected: list[int] = []
    for ids in auto(docs, add_special_tokens=False)["input_ids"]:
        expected += [auto.eos_token_id, *ids]
    assert np.asarray(data.train).tolist() == expected
    assert data.meta["train"]["docs"] == 1000 and data.eos_id == auto.eos_token_id
    # the model's vocabulary: the tokenizer's rounded up to a multiple of 128 (2,048 already is one)
    assert data.model_vocab_size == 2048 and DataConfig().pad_vocab_multiple == 128
