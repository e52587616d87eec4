"""Byte-level BPE tokenizer training (two recipes), and the byte length of every token (for bits-per-byte).

Recipes (``data.tokenizer_recipe``):

- ``gpt2``: GPT-2's byte-level BPE (its split regex inside ``ByteLevel``), one special token ``<|endoftext|>`` (id 0)
  that separates documents. The default, and what the embedded corpus has always used.
- ``parcae``: Parcae's ``tok_train.py`` (itself nanochat's): the GPT-4 split pattern with numbers in groups of one
  or two digits (``\\p{N}{1,2}``), then byte-level without GPT-2's regex, BPE with byte fallback, special tokens
  ``<|bos|>``, ``<|eos|>``, ``<|pad|>`` (ids 0, 1, 2; ``<|eos|>`` separates documents), trained on at most 2e9
  characters with each document cut to its first 10,000 characters; Parcae's vocabulary is 32,768.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from parcae_runner.config.schema import TokenizerRecipe

EOT = "<|endoftext|>"
# the gpt2 recipe's document separator; id 0 because it is the first (and only) special token given to the trainer
EOT_ID = 0
# 256 byte tokens + EOT: the smallest vocabulary that can encode any text
MIN_VOCAB_SIZE = 256 + 1

# GPT-4's cl100k pattern with \p{N}{1,3} narrowed to \p{N}{1,2}, as in Parcae's tok_train.py (from nanochat)
PARCAE_SPLIT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


@dataclass(frozen=True)
class Recipe:
    """How to train a tokenizer: its special tokens (the separator among them) and its training-text budget."""

    name: str
    special_tokens: tuple[str, ...]
    separator: str
    # Parcae: at most 2e9 characters in all, at most 10,000 of each document
    max_doc_chars: int | None = None


GPT2, PARCAE = TokenizerRecipe.GPT2.value, TokenizerRecipe.PARCAE.value
RECIPES = {
    GPT2: Recipe(GPT2, (EOT,), EOT),
    PARCAE: Recipe(PARCAE, ("<|bos|>", "<|eos|>", "<|pad|>"), "<|eos|>", max_doc_chars=10_000),
}


def _new_tokenizer(recipe: Recipe) -> Tokenizer:
    if recipe.name == PARCAE:
        tokenizer = Tokenizer(models.BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(pattern=Regex(PARCAE_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tokenizer = Tokenizer(models.BPE())
        # add_prefix_space=False: a document's first word is not silently changed into " word"
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _budget(docs: Iterable[str], recipe: Recipe, max_chars: int | None) -> Iterator[str]:
    used = 0
    for doc in docs:
        if recipe.max_doc_chars is not None:
            doc = doc[: recipe.max_doc_chars]
        if max_chars is not None and used + len(doc) > max_chars:
            return
        used += len(doc)
        yield doc


def train_tokenizer(
    docs: Iterable[str], vocab_size: int, recipe: str = GPT2, max_chars: int | None = None
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``docs`` (streamed) with at most ``vocab_size`` tokens (fewer if the
    text runs out of pairs to merge; ``get_vocab_size()`` is the real size).

    The recipe's special tokens come first (ids 0, 1, ...); the 256 byte tokens are always present, so any string
    encodes and ``decode(encode(s).ids) == s`` exactly. ``max_chars`` caps the training text (documents after the
    cap are not read). Deterministic: the same documents give the same tokenizer.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is too small; a byte-level BPE needs at least {MIN_VOCAB_SIZE}")
    spec = RECIPES[recipe]
    tokenizer = _new_tokenizer(spec)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special_tokens),
        # every byte, seen or not, so no text is ever out of vocabulary
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    length = len(docs) if isinstance(docs, Sequence) else None
    tokenizer.train_from_iterator(_budget(docs, spec, max_chars), trainer=trainer, length=length)
    for expected_id, token in enumerate(spec.special_tokens):
        if tokenizer.token_to_id(token) != expected_id:
            raise RuntimeError(f"{token} got id {tokenizer.token_to_id(token)}, expected {expected_id}")
    return tokenizer


def _byte_fallback(token: str) -> bool:
    # sentencepiece-style byte tokens: "<0x41>"
    return len(token) == 6 and token.startswith("<0x") and token.endswith(">")


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """The number of UTF-8 bytes each token id decodes to: int32, shape ``[vocab]``; special tokens count 0.

    Bits per byte of a stream is ``sum(loss_nats) / (ln 2 * token_byte_lengths(tok)[targets].sum())``. Decoding
    token by token does not work for this (a token may hold half a UTF-8 character), so the length is read off the
    token string: in a byte-level vocabulary each character stands for exactly one byte; in a sentencepiece-style
    one (Llama) ``<0xNN>`` is one byte, ``▁`` a space, anything else its UTF-8 length.
    """
    alphabet = frozenset(pre_tokenizers.ByteLevel.alphabet())
    special = set(tokenizer.get_added_tokens_decoder())
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    byte_level = all(alphabet.issuperset(t) for t, i in vocab.items() if i not in special and not _byte_fallback(t))
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int32)
    for token, token_id in vocab.items():
        if token_id in special or token_id >= len(lengths):
            continue
        if _byte_fallback(token):
            lengths[token_id] = 1
        elif byte_level:
            lengths[token_id] = len(token)
        else:
            lengths[token_id] = len(token.replace("\u2581", " ").encode("utf-8"))
    return lengths
