"""Document sources: the embedded stdlib corpus and text files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.config.schema import DataConfig
from parcae_runner.data import DataError, embedded_documents, load_documents, text_file_documents
from parcae_runner.data.corpus import MIN_DOC_CHARS


def _digest(docs: list[str]) -> str:
    return hashlib.sha256("\0".join(docs).encode()).hexdigest()


def test_embedded_corpus_is_sorted_unique_and_sizeable() -> None:
    docs = embedded_documents()
    size = sum(len(d.encode("utf-8")) for d in docs)
    print(f"embedded corpus: {len(docs)} docs, {size / 1e6:.2f} MB")
    assert docs == sorted(set(docs))
    assert min(len(d) for d in docs) >= MIN_DOC_CHARS
    assert len(docs) > 1000
    assert size > 1_000_000
    # the help topics are in (e.g. the "if" statement's grammar)
    assert any("if_stmt" in d for d in docs)
    assert embedded_documents() == docs


def test_embedded_corpus_is_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    # another interpreter, another hash seed, another working directory, nothing pre-imported: same corpus
    code = (
        "import hashlib; from parcae_runner.data.corpus import embedded_documents; "
        "print(hashlib.sha256('\\0'.join(embedded_documents()).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(embedded_documents())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_text_files_reads_txt_md_and_jsonl_in_sorted_order(tmp_path: Path) -> None:
    _write(tmp_path / "b.md", "# Title\n\nmarkdown body ünïcode\n")
    _write(tmp_path / "a.txt", "plain text file")
    # a raw U+2028 inside a JSON string is not a line break
    lines = [json.dumps({"text": "line one"}), "", json.dumps({"text": "line\u2028two", "id": 2}, ensure_ascii=False)]
    _write(tmp_path / "sub" / "c.jsonl", "\n".join(lines) + "\n")
    _write(tmp_path / "sub" / "empty.txt", "  \n")
    _write(tmp_path / "d.csv", "ignored,suffix")
    _write(tmp_path / ".hidden" / "e.txt", "ignored, hidden folder")
    assert text_file_documents(str(tmp_path)) == [
        "plain text file",
        "# Title\n\nmarkdown body ünïcode\n",
        "line one",
        "line\u2028two",
    ]
    assert text_file_documents(str(tmp_path / "sub" / "c.jsonl")) == ["line one", "line\u2028two"]


def test_text_files_missing_path_names_the_key(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(DataError, match="data.path") as info:
        text_file_documents(missing)
    assert missing in str(info.value)
    assert ".jsonl" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_text_files_without_documents_raise(tmp_path: Path) -> None:
    _write(tmp_path / "notes.csv", "not a document")
    with pytest.raises(DataError, match="data.path"):
        text_file_documents(str(tmp_path))
    with pytest.raises(DataError, match="data.path"):
        text_file_documents(str(tmp_path / "notes.csv"))


def test_jsonl_without_text_field_names_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path / "x.jsonl", json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no"}) + "\n")
    with pytest.raises(DataError, match=r"x\.jsonl:2"):
        text_file_documents(str(tmp_path))


def test_load_documents_checks_source_and_path() -> None:
    with pytest.raises(DataError, match="data.source"):
        load_documents(DataConfig(source="web"))
    with pytest.raises(DataError, match="data.path"):
        load_documents(DataConfig(source="text_files", path=None))
