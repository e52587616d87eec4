"""Byte-level BPE tokenizer training, and the byte length of every token (for bits-per-byte)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
# the document separator; id 0 because it is the first (and only) special token given to the trainer
EOT_ID = 0
# 256 byte tokens + EOT: the smallest vocabulary that can encode any text
MIN_VOCAB_SIZE = 256 + 1


def train_tokenizer(docs: Sequence[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``docs`` with at most ``vocab_size`` tokens (fewer if the text runs out
    of pairs to merge; ``get_vocab_size()`` is the real size).

    ``<|endoftext|>`` is id 0; the 256 byte tokens are always present, so any string encodes and
    ``decode(encode(s).ids) == s`` exactly. Deterministic: the same ``docs`` give the same tokenizer.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is too small; a byte-level BPE needs at least {MIN_VOCAB_SIZE}")
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a document's first word is not silently changed into " word"
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        # every byte, seen or not, so no text is ever out of vocabulary
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(docs, trainer=trainer, length=len(docs))
    if tokenizer.token_to_id(EOT) != EOT_ID:
        raise RuntimeError(f"{EOT} got id {tokenizer.token_to_id(EOT)}, expected {EOT_ID}")
    return tokenizer


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """The number of UTF-8 bytes each token id decodes to: int32, shape ``[vocab]``; special tokens count 0.

    Bits per byte of a stream is ``sum(loss_nats) / (ln 2 * token_byte_lengths(tok)[targets].sum())``. Decoding
    token by token does not work for this (a token may hold half a UTF-8 character), so the length is read off the
    byte-level alphabet instead: each character of a byte-level token string stands for exactly one byte.
    """
    alphabet = frozenset(pre_tokenizers.ByteLevel.alphabet())
    special = set(tokenizer.get_added_tokens_decoder())
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int32)
    for token, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
        if token_id in special:
            continue
        if not alphabet.issuperset(token):
            raise ValueError(f"token {token!r} (id {token_id}) is not byte-level; expected a ByteLevel BPE tokenizer")
        lengths[token_id] = len(token)
    return lengths
