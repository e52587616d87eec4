"""``data.source=hf``: a Hugging Face dataset through the ``datasets`` library, offline unless asked.

``data.dataset`` is one of:
- a folder written by ``Dataset.save_to_disk`` (``load_from_disk``);
- a local folder of data files (``load_dataset(folder)``: Parquet, JSON lines, CSV, text, as ``datasets`` detects);
- a hub name (``Skylion007/openwebtext``, ``HuggingFaceFW/fineweb-edu``) read from the local cache (``HF_HOME``).

Offline by default (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set before ``datasets`` is imported), so a compute
node never hangs on a closed network and a missing dataset is an error with the command that fills the cache;
``data.download=true`` (on a machine with network, e.g. ``parcae-runner prepare data=openwebtext
data.download=true``) lets ``datasets`` download into the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from parcae_runner.data.errors import DataError
from parcae_runner.data.sources import BATCH_ROWS, Document, Source


def _offline(download: bool) -> None:
    if not download:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


class HFSource(Source):
    name = "hf"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._dataset: Any = None

    def describe(self) -> str:
        parts = [str(self.cfg.dataset), self.cfg.config_name, f"split={self.cfg.split}"]
        return "hf " + " ".join(p for p in parts if p)

    def _fill_hint(self) -> str:
        args = [repr(self.cfg.dataset)]
        if self.cfg.config_name:
            args.append(f"name={self.cfg.config_name!r}")
        args.append(f"split={self.cfg.split!r}")
        return (
            "fill the cache on a machine with network: parcae-runner prepare "
            f"data.source=hf data.dataset={self.cfg.dataset}"
            + (f" data.config_name={self.cfg.config_name}" if self.cfg.config_name else "")
            + ' data.download=true (or python -c "import datasets; datasets.load_dataset('
            + ", ".join(args)
            + ')"), then copy HF_HOME to this machine'
        )

    def _open(self) -> Any:
        if self._dataset is not None:
            return self._dataset
        if not self.cfg.dataset:
            raise DataError("data.dataset is not set; data.source=hf expects a hub name or a local dataset folder")
        _offline(self.cfg.download)
        import datasets

        datasets.disable_progress_bars()
        local = Path(str(self.cfg.dataset)).expanduser()
        try:
            if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
                ds = datasets.load_from_disk(str(local))
                if isinstance(ds, datasets.DatasetDict):
                    ds = ds[self.cfg.split]
            else:
                ds = datasets.load_dataset(
                    str(local) if local.is_dir() else str(self.cfg.dataset),
                    name=self.cfg.config_name,
                    split=self.cfg.split,
                    revision=self.cfg.revision,
                    streaming=bool(self.cfg.streaming),
                )
        except Exception as exc:  # datasets raises many types for "not there" (offline, missing, bad split)
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            raise DataError(
                f"data.dataset={self.cfg.dataset!r} cannot be loaded ({first}); {self._fill_hint()}"
            ) from exc
        columns = list(ds.column_names or [])
        if self.cfg.text_field not in columns:
            raise DataError(
                f"data.text_field={self.cfg.text_field!r} is not a column of {self.describe()}; "
                f"its columns: {', '.join(columns)}"
            )
        self._dataset = ds
        return ds

    def check(self) -> None:
        self._open()
        super().check()

    def fingerprint(self) -> Any:
        ds = self._open()
        # a cached/saved Dataset has a content fingerprint; a streamed one is named by its coordinates
        fingerprint = getattr(ds, "_fingerprint", None)
        return {
            "dataset": str(self.cfg.dataset),
            "config_name": self.cfg.config_name,
            "split": self.cfg.split,
            "revision": self.cfg.revision,
            "text_field": self.cfg.text_field,
            "fingerprint": fingerprint,
        }

    def size_bytes(self) -> int | None:
        ds = self._open()
        info = getattr(ds, "info", None)
        size = getattr(info, "dataset_size", None) if info is not None else None
        return int(size) if size else None

    def documents(self) -> Iterator[Document]:
        ds = self._open()
        for batch in ds.select_columns([self.cfg.text_field]).iter(batch_size=BATCH_ROWS):
            for text in batch[self.cfg.text_field]:
                if isinstance(text, str) and text.strip():
                    yield text
