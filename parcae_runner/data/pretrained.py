"""Pretrained tokenizers: a ``tokenizer.json`` file, a local Hugging Face folder, or a hub name in the HF cache.

``data.tokenizer`` other than ``train`` names one of those. Nothing here touches the network: a hub name is looked
up in the local cache (``HF_HOME``), and when it is absent the error says how to fill the cache. The token ids are
those of the folder's fast tokenizer (``tokenizer.json``), which is what ``transformers.AutoTokenizer`` runs for
the same folder; a folder with only slow-tokenizer files is converted by ``transformers`` once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from parcae_runner.data.errors import DataError

TRAIN = "train"
# separators tried, in order, when the tokenizer's own config names none
KNOWN_SEPARATORS = ("<|endoftext|>", "<|eos|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class LoadedTokenizer:
    """A pretrained tokenizer, the id it puts between documents, and where it came from."""

    tokenizer: Tokenizer
    separator_id: int
    source: str

    @property
    def sha256(self) -> str:
        """The tokenizer's identity: its canonical JSON (vocabulary, merges, normalisation, specials)."""
        return hashlib.sha256(self.tokenizer.to_str().encode("utf-8")).hexdigest()


def _token_name(value: Any) -> str | None:
    # tokenizer_config.json writes a special token as a string or as {"content": ..., ...}
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _configured_eos(folder: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.is_file():
            try:
                eos = _token_name(json.loads(path.read_text()).get("eos_token"))
            except (json.JSONDecodeError, AttributeError):
                eos = None
            if eos:
                return eos
    return None


def _separator_id(tokenizer: Tokenizer, wanted: str | None, folder: Path | None, spec: str) -> int:
    candidates = [wanted] if wanted else [_configured_eos(folder) if folder else None, *KNOWN_SEPARATORS]
    for token in candidates:
        token_id = tokenizer.token_to_id(token) if token else None
        if token_id is not None:
            return int(token_id)
    if wanted:
        raise DataError(f"data.eos_token={wanted!r} is not a token of data.tokenizer={spec!r}")
    raise DataError(
        f"data.tokenizer={spec!r} has no end-of-document token ({', '.join(KNOWN_SEPARATORS)} or its config's "
        "eos_token); set data.eos_token"
    )


def separator_of(tokenizer: Tokenizer | None) -> int:
    """The document separator of a tokenizer this project prepared data with (the first of ``KNOWN_SEPARATORS``
    it has; id 0, the gpt2 recipe's ``<|endoftext|>``, when it has none)."""
    for token in KNOWN_SEPARATORS:
        token_id = tokenizer.token_to_id(token) if tokenizer is not None else None
        if token_id is not None:
            return int(token_id)
    return 0


def _from_file(path: Path, spec: str) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust parser raises a bare Exception on anything malformed
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.tokenizer={spec!r}: {path} is not a tokenizer.json ({first})") from exc


def _from_slow_folder(folder: Path, spec: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer

        auto = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
        return auto.backend_tokenizer
    except Exception as exc:
        raise DataError(
            f"data.tokenizer={spec!r}: the folder holds no tokenizer that transformers can load ({exc})"
        ) from exc


def _cached_hub_folder(name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "tokenizer.json")
    return Path(found).parent if isinstance(found, str) else None


def _looks_like_hub_name(spec: str) -> bool:
    return spec.count("/") <= 1 and not spec.startswith((".", "/", "~")) and not spec.endswith(".json")


def load_pretrained(spec: str, eos_token: str | None = None) -> LoadedTokenizer:
    """Load ``spec``: a ``tokenizer.json`` path, a folder holding one (or slow-tokenizer files), or a hub name.

    Raises ``DataError`` (one line) when the path is not a tokenizer or the hub name is not in the local cache.
    """
    path = Path(spec).expanduser()
    folder: Path | None
    if path.is_file():
        folder = path.parent
        tokenizer = _from_file(path, spec)
    elif path.is_dir():
        folder = path
        if (path / "tokenizer.json").is_file():
            tokenizer = _from_file(path / "tokenizer.json", spec)
        else:
            tokenizer = _from_slow_folder(path, spec)
    elif _looks_like_hub_name(spec):
        folder = _cached_hub_folder(spec)
        if folder is None:
            files = " ".join(TOKENIZER_FILES)
            raise DataError(
                f"data.tokenizer={spec!r} is not in the Hugging Face cache (HF_HOME); fill it on a machine with "
                f"network: hf download {spec} {files}"
            )
        tokenizer = _from_file(folder / "tokenizer.json", spec)
    else:
        raise DataError(
            f"data.tokenizer={spec!r} does not exist; expected 'train', a tokenizer.json, a tokenizer folder or a "
            "Hugging Face hub name"
        )
    return LoadedTokenizer(tokenizer, _separator_id(tokenizer, eos_token, folder, spec), spec)


def padded_vocab_size(tokenizer_size: int, multiple: int) -> int:
    """The model's vocabulary: the tokenizer's rounded up to a multiple of ``multiple`` (GPT-NeoX's
    ``make_vocab_size_divisible_by``, 128 in Pythia's configs: 50,277 → 50,304), so the embedding and head
    matrices have shapes that tile well on GPUs. Ids past the tokenizer's are never produced."""
    if multiple < 1:
        raise DataError(f"data.pad_vocab_multiple={multiple} must be >= 1")
    return -(-tokenizer_size // multiple) * multiple
