"""Document sources: where the raw documents of ``data.source`` come from, streamed in a fixed order.

Every source yields its documents one at a time (never the whole corpus in memory), always in the same order, and
can say up front, before anything is written, whether it can be read (:meth:`Source.check`). Its
:meth:`Source.fingerprint` is cheap (file names, sizes and modification times; a dataset's fingerprint) and is what
the prepared data is cached under.

- ``embedded``: text that ships with Python (see ``corpus.py``); ``text_files``: ``.txt``/``.md`` (a document a
  file) and ``.jsonl`` (a document a line, field ``text``) under ``data.path``.
- ``jsonl``: ``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst`` files under ``data.path``, field ``data.text_field``.
- ``parquet``: ``.parquet`` shards under ``data.path``, column ``data.text_field`` (FineWeb-Edu's layout).
- ``hf``: a Hugging Face dataset (``data.dataset``: a hub name in the local cache, a ``save_to_disk`` folder or a
  local data folder ``load_dataset`` reads), ``data.config_name``, ``data.split``, ``data.revision``.
- ``pretokenized``: Megatron/GPT-NeoX ``.bin/.idx`` (``megatron.py``): documents are token arrays, not text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parcae_runner.data.corpus import embedded_documents
from parcae_runner.data.errors import DataError
from parcae_runner.data.megatron import IndexedFile, indexed_prefixes

if TYPE_CHECKING:
    from parcae_runner.config.schema import DataConfig

SOURCES = ("embedded", "text_files", "jsonl", "parquet", "hf", "pretokenized")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
TEXT_SUFFIXES = (".txt", ".md")
# pyarrow decompresses both, streaming; no extra dependency
_COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
BATCH_ROWS = 1024

Document = str | np.ndarray


def _files(path: str | None, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """The files under ``path`` (a file or a folder, walked in sorted relative order, hidden parts skipped)."""
    if not path:
        raise DataError(f"data.path is not set; expected {what}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data.path={path!r} does not exist; expected {what}")
    if root.is_file():
        files = [root] if root.name.lower().endswith(suffixes) else []
    else:
        files = sorted(
            (p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not files:
        raise DataError(f"data.path={path!r} holds no {'/'.join(suffixes)} files; expected {what}")
    return files


def _file_fingerprint(files: list[Path]) -> list[list[Any]]:
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _text_lines(path: Path) -> Iterator[str]:
    import io

    import pyarrow as pa

    compression = _COMPRESSION.get(path.suffix.lower())
    with pa.input_stream(str(path), compression=compression) as raw:
        # newline="\n": split on \n only; JSON strings may hold U+2028 and friends raw
        yield from io.TextIOWrapper(raw, encoding="utf-8", newline="\n")


def _jsonl_texts(path: Path, field: str) -> Iterator[str]:
    try:
        for lineno, line in enumerate(_text_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"data.path: {path}:{lineno} is not valid JSON ({e}); expected one object a line"
                ) from e
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"data.text_field: {path}:{lineno} has no string field {field!r}")
            yield text
    except UnicodeDecodeError as e:
        raise DataError(f"data.path: {path} is not valid UTF-8 ({e})") from e


class Source:
    """A corpus: its documents in a fixed order, a cheap fingerprint, and a check that needs no writing."""

    name = ""
    pretokenized = False

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Raise ``DataError`` if the source cannot be read or holds no document; writes nothing."""
        if next(iter(self.documents()), None) is None:
            raise DataError(f"data.source={self.name}: {self.describe()} holds no non-empty documents")

    def fingerprint(self) -> Any:
        raise NotImplementedError

    def documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def size_bytes(self) -> int | None:
        """Bytes of input (compressed files count as stored), for estimates before preparing; None if unknown."""
        return None

    def describe(self) -> str:
        return f"{self.name} {self.cfg.path or ''}".strip()


class EmbeddedSource(Source):
    name = "embedded"

    def fingerprint(self) -> Any:
        import hashlib

        h = hashlib.sha256()
        for doc in embedded_documents():
            h.update(len(doc).to_bytes(8, "little") + doc.encode("utf-8"))
        return h.hexdigest()

    def documents(self) -> Iterator[Document]:
        yield from embedded_documents()

    def size_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in embedded_documents())

    def describe(self) -> str:
        return "embedded (Python's own documentation)"


class FileSource(Source):
    """A source read from files under ``data.path``."""

    suffixes: tuple[str, ...] = ()
    what = ""

    def files(self) -> list[Path]:
        return _files(self.cfg.path, self.suffixes, self.what)

    def fingerprint(self) -> Any:
        return {"files": _file_fingerprint(self.files()), "text_field": self.cfg.text_field}

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def documents_of(self, path: Path) -> Iterator[Document]:
        raise NotImplementedError

    def documents(self) -> Iterator[Document]:
        for path in self.files():
            for doc in self.documents_of(path):
                if isinstance(doc, np.ndarray) or doc.strip():
                    yield doc


class TextFileSource(FileSource):
    name = "text_files"
    suffixes = (*TEXT_SUFFIXES, ".jsonl")
    what = "a .txt/.md/.jsonl file or a folder containing them"

    def documents_of(self, path: Path) -> Iterator[Document]:
        if path.name.lower().endswith(".jsonl"):
            yield from _jsonl_texts(path, "text")
            return
        try:
            yield path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"data.path: {str(path)!r} is not valid UTF-8 ({e}); expected UTF-8 text files") from e


class JsonlSource(FileSource):
    name = "jsonl"
    suffixes = JSONL_SUFFIXES
    what = "a .jsonl/.jsonl.gz/.jsonl.zst file or a folder of them"

    def documents_of(self, path: Path) -> Iterator[Document]:
        yield from _jsonl_texts(path, self.cfg.text_field)


class ParquetSource(FileSource):
    name = "parquet"
    suffixes = (".parquet",)
    what = "a folder of .parquet shards with a text column"

    def check(self) -> None:
        import pyarrow.parquet as pq

        for path in self.files():
            schema = pq.read_schema(path)
            if self.cfg.text_field not in schema.names:
                raise DataError(
                    f"data.text_field={self.cfg.text_field!r} is not a column of {path.name}; "
                    f"its columns: {', '.join(schema.names)}"
                )
        super().check()

    def documents_of(self, path: Path) -> Iterator[Document]:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=[self.cfg.text_field]):
            for text in batch.column(0).to_pylist():
                if isinstance(text, str):
                    yield text


class PretokenizedSource(FileSource):
    name = "pretokenized"
    pretokenized = True
    what = "a Megatron .bin/.idx prefix or a folder of .bin/.idx pairs"

    def files(self) -> list[Path]:
        if not self.cfg.path:
            raise DataError(f"data.path is not set; expected {self.what}")
        return [p.with_name(p.name + ".bin") for p in indexed_prefixes(self.cfg.path)]

    def check(self) -> None:
        for path in self.files():
            IndexedFile(path.with_suffix(""))
        super().check()

    def fingerprint(self) -> Any:
        files = self.files()
        return {"files": _file_fingerprint(files + [p.with_suffix(".idx") for p in files])}

    def documents_of(self, path: Path) -> Iterator[Document]:
        yield from IndexedFile(path.with_suffix("")).documents()


def source_for(cfg: DataConfig) -> Source:
    """The :class:`Source` that ``cfg.source`` names."""
    from parcae_runner.data.hf_source import HFSource

    kinds: dict[str, type[Source]] = {
        "embedded": EmbeddedSource,
        "text_files": TextFileSource,
        "jsonl": JsonlSource,
        "parquet": ParquetSource,
        "hf": HFSource,
        "pretokenized": PretokenizedSource,
    }
    if cfg.source not in kinds:
        raise DataError(f"data.source={cfg.source!r} is unknown; expected one of {', '.join(SOURCES)}")
    return kinds[cfg.source](cfg)
