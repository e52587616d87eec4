"""The byte-level BPE tokenizer and token byte lengths."""

from __future__ import annotations

import pydoc_data.topics

import numpy as np
import pytest
from tokenizers import Tokenizer

from parcae_runner.data import EOT, EOT_ID, token_byte_lengths, train_tokenizer

SAMPLES = [
    "",
    "hello world",
    " leading space and trailing  ",
    "def f(x):\n\treturn x ** 2  # tabs, newlines\r\n",
    "naïve café, Straße, ĳ, ﬁ ligature",
    "日本語のテキスト、中文文本，한국어",
    "emoji 🎉👩‍👩‍👧 and flags 🇫🇷",
    "math ∑∫√∞ ≠ ≤, arrows →⇒",
    "control \x00\x01\x7f chars and \u200b zero width",
    "combining e\u0301 vs \u00e9",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return train_tokenizer(list(pydoc_data.topics.topics.values()), 512)


def test_special_token_and_size(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_to_id(EOT) == EOT_ID == 0
    assert 257 < tokenizer.get_vocab_size() <= 512


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_is_exact(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids) == text


def test_training_is_deterministic(tokenizer: Tokenizer) -> None:
    again = train_tokenizer(list(pydoc_data.topics.topics.values()), 512)
    assert again.to_str() == tokenizer.to_str()


def test_token_byte_lengths_sum_to_utf8_bytes(tokenizer: Tokenizer) -> None:
    lengths = token_byte_lengths(tokenizer)
    assert lengths.dtype == np.int32
    assert lengths.shape == (tokenizer.get_vocab_size(),)
    assert lengths[EOT_ID] == 0
    assert lengths.min() == 0 and (lengths[1:] >= 1).all()
    for text in SAMPLES:
        ids = tokenizer.encode(text).ids
        assert lengths[ids].sum() == len(tokenizer.decode(ids).encode("utf-8")) == len(text.encode("utf-8"))
    # EOT in a sequence adds no bytes
    ids = tokenizer.encode("a" + EOT + "b").ids
    assert EOT_ID in ids and lengths[ids].sum() == 2


def test_vocab_too_small_is_rejected() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["some text"], 100)
